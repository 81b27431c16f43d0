"""Which `nix build --json` failures the resolver gives up on at once: Nix's stderr recorded
from the real 2.8, 2.26 and 2.34 binaries when the .drv has been garbage-collected."""

from __future__ import annotations

import pytest

from nix_push_queue.daemon.resolver import is_final

DRV = "/nix/store/00000000000000000000000000000000-x.drv"
# An auto-GC (min-free) run by the same command prints before the error.
GC = "deleting garbage...\ndeleting unused links...\nnote: currently hard linking saves -0.00 MiB\n"

RECORDED = {
    "2.8": f"error: getting status of '{DRV}!out': No such file or directory\n",
    "2.26": f"don't know how to build these paths:\n  {DRV}\n"
            f"error: cannot build missing derivation '{DRV}'\n",
    "2.34": f"don't know how to build these paths:\n  {DRV}\n"
            f"error: failed to obtain derivation of '{DRV}'\n",
}


@pytest.mark.parametrize("version", sorted(RECORDED))
def test_a_collected_derivation_is_final(version: str) -> None:
    assert is_final(RECORDED[version])
    last_line = RECORDED[version].strip().splitlines()[-1]
    assert is_final(GC + last_line)


@pytest.mark.parametrize("stderr", [
    "error: opening lock file '/nix/var/nix/db/big-lock': Resource temporarily unavailable\n",
    "error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': Connection refused",
    "",
])
def test_a_passing_trouble_is_retried(stderr: str) -> None:
    assert not is_final(stderr)
