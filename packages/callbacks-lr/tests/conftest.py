from __future__ import annotations

import sys
from pathlib import Path

# Tests import their helpers as a plain module (pytest runs with --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).parent))
