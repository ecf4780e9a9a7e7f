"""``python -m aipulse_cli`` is the ``aipulse`` command."""
import sys

from .main import main

sys.exit(main())
