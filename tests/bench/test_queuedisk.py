"""bench/queuedisk.py at a small size: it drains every path, measures real files, and its
report names both settings."""

from __future__ import annotations

from pathlib import Path

from bench import queuedisk


def test_queuedisk_drain_and_report(tmp_path: Path) -> None:
    ours = queuedisk.drain(tmp_path / "a", 300, sqlite_defaults=False)
    (tmp_path / "b").mkdir()
    theirs = queuedisk.drain(tmp_path / "b", 300, sqlite_defaults=True)
    assert ours.paths == theirs.paths == 300 and ours.commits == theirs.commits
    assert 0 < ours.settled_db <= ours.settled_total <= ours.peak_total
    assert ours.peak_wal > 0 and theirs.peak_wal > 0
    text = queuedisk.report({"queue (issue 20)": ours, "SQLite defaults": theirs})
    assert "| queue (issue 20) | 300 |" in text and "| SQLite defaults | 300 |" in text
    assert "Load average" in text
