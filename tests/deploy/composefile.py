"""docker-compose.yml read the way Docker Compose reads it, for tests on machines without it.

    >>> interpolate("a ${X:?set X} ${Y:-d}", {"X": "1"})
    'a 1 d'
    >>> interpolate("${X:?set X in .env}", {})
    Traceback (most recent call last):
    ...
    composefile.MissingVariable: X: set X in .env

Compose's interpolation (https://docs.docker.com/reference/compose-file/interpolation/):
``$$`` is a literal ``$``; ``${VAR}``, ``${VAR:-default}`` / ``${VAR-default}``,
``${VAR:?error}`` / ``${VAR?error}`` (a missing value stops the stack with the error),
``${VAR:+alt}``. The colon forms treat an empty value as unset.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
REF = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


class MissingVariable(ValueError):
    pass


def refs(text: str) -> list[re.Match]:
    """Every ${...} reference (after `$$` escapes are removed)."""
    return list(REF.finditer(text.replace("$$", "")))


def interpolate(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name, op, arg = m.group("name"), m.group("op"), m.group("arg") or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in ("?", ":?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op in ("-", ":-") and unset:
            return arg
        if op in ("+", ":+"):
            return "" if unset else arg
        return value or ""
    out = REF.sub(sub, text.replace("$$", "\0"))
    return out.replace("\0", "$")


def load(env: dict[str, str], path: Path = COMPOSE) -> dict:
    """The file as Compose sees it with ``env`` (raises MissingVariable like `compose up`)."""
    return yaml.safe_load(interpolate(path.read_text(), env))


def raw(path: Path = COMPOSE) -> dict:
    """The file's structure without interpolation."""
    return yaml.safe_load(path.read_text())


_WHOLE = object()


def scalars(node=_WHOLE) -> str:
    """Every string of the file (keys and values, not comments: Compose interpolates those
    only), one per line."""
    node = raw() if node is _WHOLE else node
    if isinstance(node, dict):
        return "\n".join(scalars(k) + "\n" + scalars(v) for k, v in node.items())
    if isinstance(node, list):
        return "\n".join(scalars(v) for v in node)
    return node if isinstance(node, str) else ""


def env_example(path: Path = ROOT / ".env.example") -> dict[str, str]:
    """NAME=value lines of .env.example."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out
