"""crmkit.value and the console script stay pure Python: importing them never loads numpy or scipy."""

from __future__ import annotations

import subprocess
import sys

import crmkit.value


def test_value_and_cli_import_without_numpy() -> None:
    code = (
        "import sys\n"
        "import crmkit, crmkit.value, crmkit.value.datasets, crmkit.cli\n"
        "crm = crmkit.connect('memory://')\n"
        "crm.value\n"
        "loaded = sorted(m for m in ('numpy', 'scipy') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_public_names_exist() -> None:
    assert len(set(crmkit.value.__all__)) == len(crmkit.value.__all__)
    for name in crmkit.value.__all__:
        assert getattr(crmkit.value, name) is not None, name
