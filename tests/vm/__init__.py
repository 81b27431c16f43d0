"""Debian QEMU tests: the non-NixOS install path under real systemd (see conftest.py)."""

import sys
from pathlib import Path

# The scenario steps shared with the NixOS VM tests live beside those (vm-tests/scenarios).
_VM_TESTS = str(Path(__file__).resolve().parents[2] / "vm-tests")
if _VM_TESTS not in sys.path:
    sys.path.insert(0, _VM_TESTS)
