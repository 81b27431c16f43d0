"""The daemon's spool side over a real directory and a real QueueStore: quarantine counted
in the metrics and in the status counts."""

from __future__ import annotations

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
