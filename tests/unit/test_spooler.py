"""The daemon's spool side over a real directory and a real QueueStore: quarantine counted
in the metrics and in the status counts."""

from __future__ import annotations

import os
import time
from pathlib import Path

from nix_push_queue.daemon.intake import Intake
from nix_push_queue.daemon.metrics import DaemonMetrics
from nix_push_queue.daemon.spooler import Spooler
from nix_push_queue.daemon.store import QueueStore
from nix_push_queue.wire import spool
from nix_push_queue.wire.protocol import SpoolStats

STORE = "/nix/store"


def test_quarantine_is_counted_in_metrics_and_status(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    d.mkdir()
    (d / "1-1-dir.spool").mkdir()
    spool.write_spool(d, [f"{STORE}/{1:032d}-p"])
    with QueueStore(tmp_path / "q.sqlite") as store:
        metrics = DaemonMetrics()
        spooler = Spooler(str(d), Intake(store, STORE, ("a",), (), time.time), metrics)
        assert spooler.stats() == SpoolStats(pending=2, quarantined=0)
        assert spooler.ingest() == 1
        assert len(store.jobs()) == 1
        assert spooler.stats() == SpoolStats(pending=0, quarantined=1)
        assert metrics.registry.get_sample_value("npq_spool_quarantined_total") == 1.0


def test_an_unlistable_spool_is_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "spool").write_text("not a directory")
    with QueueStore(tmp_path / "q.sqlite") as store:
        spooler = Spooler(str(tmp_path / "spool"), Intake(store, STORE, ("a",), (), time.time))
        stats = spooler.stats()
        assert stats.error is not None and "ENOTDIR" in stats.error


def test_a_file_that_cannot_be_deleted_blocks_no_later_file(tmp_path: Path) -> None:
    """Immutable (chattr +i): readable, neither deletable nor movable. Its paths are queued,
    it is passed over by name, and the files after it are ingested (issue 22: main raised
    on the unlink, so every later file waited behind it at each poll)."""
    import shutil
    import subprocess

    import pytest
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr")
    d = tmp_path / "spool"
    d.mkdir()
    stuck = spool.write_spool(d, [f"{STORE}/{1:032d}-stuck"])
    if subprocess.run(["chattr", "+i", str(stuck)], check=False).returncode != 0:
        pytest.skip("this filesystem has no immutable attribute")
    try:
        later = [spool.write_spool(d, [f"{STORE}/{i:032d}-later"]) for i in (2, 3)]
        with QueueStore(tmp_path / "q.sqlite") as store:
            spooler = Spooler(str(d), Intake(store, STORE, ("a",), (), time.time))
            assert spooler.ingest() == 3
            assert sorted(p.rsplit("-", 1)[1] for p, *_ in store.jobs()) == [
                "later", "later", "stuck"]
            assert not any(Path(f).exists() for f in later)
            assert spooler.stats() == SpoolStats(pending=0, quarantined=1)
            assert spooler.ingest() == 0  # passed over, not retried and logged each poll
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=False)
