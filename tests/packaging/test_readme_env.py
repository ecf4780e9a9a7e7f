"""The README's configuration table is the one generated from the settings (scripts/readme_env_table.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from aipulse_stream.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("readme_env_table", ROOT / "scripts" / "readme_env_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_table_equals_the_settings():
    gen = _generator()
    block = gen.current((ROOT / "README.md").read_text())
    assert block, "README.md lacks the generated configuration table (its markers)"
    assert block == gen.render(), "README.md's table differs from the settings: run scripts/readme_env_table.py --write"


def test_every_setting_has_a_row_and_a_meaning():
    rendered = _generator().render()
    for name, field in Settings.model_fields.items():
        assert f"| `{ENV_PREFIX}{name.upper()}` |" in rendered
        assert field.description, f"Settings.{name} has no description for the README"
