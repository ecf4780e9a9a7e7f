"""The ``aipulse`` command: the composition root that wires the other packages.

It is the top floor: it may import every other aipulse package, and none of them imports it.
See :mod:`aipulse_cli.main` for how subcommands are registered and loaded.
"""
