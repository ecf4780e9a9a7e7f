"""Every ``AIPULSE_*`` variable goes through the configuration, never around it.

Two checks over the shipped packages' source:

- no module reads an ``AIPULSE_*`` variable itself (``os.environ.get``, ``os.environ[...]``,
  ``os.getenv``) except the configuration modules that define the variables: the stack's
  stage configs (aipulse_stream.config, composed into ``Settings``) and the SDK's own config
  (aipulse.config, aipulse.kafka_security), plus the two renderers of other programs' config
  files that take an ``env`` mapping (Alertmanager's receivers and web config, Grafana's deploy);
- every ``AIPULSE_*`` name written anywhere in them is a variable one of those configs declares,
  so the README's table (generated from ``Settings``) and docs/sdk.md (the SDK's) name them all.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from aipulse.config import ENV_VARS as SDK_ENV_VARS
from aipulse.kafka_security import ENV_VARS as SECURITY_ENV_VARS
from aipulse_stream.config import ENV_PREFIX, STAGES, Settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["collectors/aipulse", "stream/aipulse_stream", "alerts/aipulse_alerts",
            "dashboards/aipulse_grafana", "services/aipulse_local", "cli/aipulse_cli"]
CONFIG_MODULES = {
    "collectors/aipulse/config.py",
    "collectors/aipulse/kafka_security.py",
    "stream/aipulse_stream/config.py",
    "alerts/aipulse_alerts/amconfig.py",     # Alertmanager's receivers, from AlertsConfig's variables
    "alerts/aipulse_alerts/webconfig.py",    # Alertmanager/Prometheus basic auth files (<NAME>_PASSWORD)
    "dashboards/aipulse_grafana/deploy.py",  # expands GrafanaConfig's variables into Grafana's API calls
}
NAME = re.compile(r"AIPULSE_[A-Z0-9_]*[A-Z0-9]")
# Prefixes written to build a name (ENV_PREFIX + field, "AIPULSE_ALERT_" + receiver part).
PREFIXES = {"AIPULSE_", "AIPULSE_ALERT_", "AIPULSE_GRAFANA_", "AIPULSE_KAFKA_SASL_", "AIPULSE_KAFKA_SSL_", "AIPULSE_KAFKA_SECURITY_"}


def declared() -> set[str]:
    return ({ENV_PREFIX + f.upper() for f in Settings.model_fields} | set(SDK_ENV_VARS.values())
            | set(SECURITY_ENV_VARS.values()))


def sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "string" assignments (DISABLE_ENV = "AIPULSE_ALERTS", ...)."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = node.value.value
    return out


def _text(node: ast.AST, consts: dict[str, str]) -> str | None:
    """The string an argument spells (a literal, a module constant, or the start of a concatenation/f-string)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return consts.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left, consts)
    if isinstance(node, ast.JoinedStr) and node.values:
        return _text(node.values[0], consts)
    return None


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (isinstance(node, ast.Name) and node.id == "environ")


def direct_reads(path: Path) -> list[str]:
    """``line: variable`` for each read of an AIPULSE_ variable straight from the environment."""
    tree = ast.parse(path.read_text(), str(path))
    consts = _constants(tree)
    found = []
    for node in ast.walk(tree):
        arg = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            f = node.func
            if f.attr in ("get", "pop", "setdefault") and _is_environ(f.value):
                arg = node.args[0]
            elif f.attr == "getenv":
                arg = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
            arg = node.slice
        if arg is not None:
            name = _text(arg, consts)
            if name is None or name.startswith(ENV_PREFIX):   # unknown: could be anything, say so
                found.append(f"{node.lineno}: {name or ast.unparse(arg)}")
    return found


def test_the_scan_sees_each_kind_of_read(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('import os\nfrom os import environ\nRULES = "AIPULSE_ALERT_RULES"\n'
                 'a = os.environ.get(RULES, "")\nb = os.getenv("AIPULSE_LOG_LEVEL")\n'
                 'c = os.environ["AIPULSE_DEMO_TRACE"]\nd = environ.get("AIPULSE_" + "X")\n'
                 'e = os.environ.get("XDG_CACHE_HOME")\nos.environ["AIPULSE_Y"] = "1"\n')
    assert direct_reads(f) == ["4: AIPULSE_ALERT_RULES", "5: AIPULSE_LOG_LEVEL", "6: AIPULSE_DEMO_TRACE",
                               "7: AIPULSE_"]


def test_no_module_reads_aipulse_variables_around_the_settings():
    offenders = []
    for path in sources():
        rel = str(path.relative_to(ROOT))
        if rel in CONFIG_MODULES:
            continue
        offenders += [f"{rel}:{hit}" for hit in direct_reads(path)]
    assert not offenders, ("AIPULSE_* read directly from the environment (add a field to the stage's config "
                           "in aipulse_stream/config.py and read it from there): " + "; ".join(offenders))


def test_every_variable_named_in_the_code_is_declared():
    known = declared()
    unknown = {}
    for path in sources():
        for m in NAME.finditer(path.read_text()):
            name = m.group(0)
            if name not in known and name + "_" not in PREFIXES and name not in PREFIXES:
                unknown.setdefault(name, str(path.relative_to(ROOT)))
    assert not unknown, f"AIPULSE_* names no config declares (so no README row): {unknown}"


def test_stages_compose_into_settings_without_overlap():
    names = [n for stage in STAGES for n in stage.model_fields]
    assert len(names) == len(set(names)), "a field is declared by two stages"
    assert set(names) == set(Settings.model_fields)
    # each stage reads its own fields the way Settings does
    for stage in STAGES:
        assert stage.from_env({}) == stage(**{n: getattr(Settings.from_env({}), n) for n in stage.model_fields})
