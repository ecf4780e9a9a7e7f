"""`aipulse demo`: see :mod:`aipulse_cli.demo.run` (the command), :mod:`.app` (the simulated
application on the real SDK), :mod:`.trace` (the real request trace), :mod:`.scenario` (the
incident) and :mod:`.live` (the terminal view)."""
from .run import add_arguments, main, run, run_demo

__all__ = ["add_arguments", "main", "run", "run_demo"]
from .synthetic import TRACE_ATTRIBUTION, load_trace, synthesize  # the benchmarks' flat events

__all__ += ["TRACE_ATTRIBUTION", "load_trace", "synthesize"]
