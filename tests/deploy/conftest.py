"""Deploy tests: the compose file, the image and the ClickHouse users, read and tried without Docker."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # for `import composefile`
