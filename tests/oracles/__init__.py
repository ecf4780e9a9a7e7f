"""Test-only oracles, kept out of the shipped packages (importable as ``oracles``: tests/ is on
pytest's pythonpath).

- :mod:`oracles.exact`: exact reference metrics computed from the events themselves, written
  independently of the worker's windows and the read side's SQL.
- :mod:`oracles.grafana_expressions`: Grafana's server-side expressions (reduce, threshold) as
  its docs define them, to evaluate the generated alert rules.
"""
