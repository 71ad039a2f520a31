"""The example plugin's package, importable without installing it (its aggregate runs the generic contract)."""

import sys
from pathlib import Path

_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "subscriptions" / "src"
if str(_EXAMPLE) not in sys.path:
    sys.path.append(str(_EXAMPLE))
