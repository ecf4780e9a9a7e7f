"""Alert tests: unit tests on synthetic windows (alertsim.py) and end to end on the real stack."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # for `import alertsim`
