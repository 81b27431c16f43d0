"""Queue disk use over a long drain: database + WAL (+ shared memory) bytes on disk.

Synthetic, through the store API (daemon/store.py) against an instant target: no `nix copy`,
so the queue's own writes are all there is. Paths arrive as the hook hands them over (ENQUEUE
paths per request); a worker claims BATCH rows at a time and completes them, as after a
successful upload, each step its own fsync'd commit, as in the daemon. The daemon's
scheduled checkpoint runs every dbconn.CHECKPOINT_EVERY seconds. Sampled after every commit.

`--sqlite-defaults` runs the same drain with SQLite's defaults (wal_autocheckpoint 1000
pages, no journal_size_limit, no scheduled checkpoint), what the queue did before issue 20.

    .venv/bin/python -m bench.queuedisk --paths 100000 --out bench/results/queuedisk.md
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nix_push_queue.daemon import dbconn
from nix_push_queue.daemon.store import QueueStore

ENQUEUE = 10  # paths per enqueue request
BATCH = 16  # rows per claim (queue.batch_size's default)
TARGETS = ("cache",)
_HASH = "0123456789abcdfghijklmnpqrsvwxyz"


@dataclass(frozen=True)
class Figures:
    paths: int
    seconds: float
    peak_total: int
    peak_wal: int
    settled_total: int
    settled_db: int
    commits: int


def store_path(i: int) -> str:
    digits = "".join(_HASH[(i >> (5 * k)) & 31] for k in range(32))
    return f"/nix/store/{digits}-bench-{i}"


def drain(directory: Path, paths: int, *, sqlite_defaults: bool) -> Figures:
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "queue.sqlite"
    store = QueueStore(db)
    if sqlite_defaults:
        store._conn.execute("PRAGMA wal_autocheckpoint=1000")
        store._conn.execute("PRAGMA journal_size_limit=-1")
    started = last_checkpoint = time.monotonic()
    peak_total = peak_wal = commits = 0
    now = 0.0

    def sample() -> None:
        nonlocal peak_total, peak_wal
        peak_total = max(peak_total, dbconn.disk_usage(db))
        wal = Path(f"{db}-wal")
        peak_wal = max(peak_wal, wal.stat().st_blocks * 512 if wal.exists() else 0)

    done = 0
    for i in range(0, paths, ENQUEUE):
        now += 1.0
        store.enqueue([store_path(k) for k in range(i, min(i + ENQUEUE, paths))], TARGETS, now)
        commits += 1
        sample()
        while True:
            jobs = store.claim(TARGETS[0], BATCH, now)
            if not jobs:
                break
            store.complete([j.id for j in jobs], now)
            done += len(jobs)
            commits += 2
            sample()
            if len(jobs) < BATCH:
                break
        if not sqlite_defaults and time.monotonic() - last_checkpoint > dbconn.CHECKPOINT_EVERY:
            store.checkpoint()
            last_checkpoint = time.monotonic()
    seconds = time.monotonic() - started
    assert done == paths, (done, paths)
    if not sqlite_defaults:
        store.checkpoint()  # the next scheduled one
    settled_total = dbconn.disk_usage(db)
    peak_total = max(peak_total, settled_total)  # the checkpoint grows the database too
    settled_db = db.stat().st_blocks * 512
    store.close()
    return Figures(paths, seconds, peak_total, peak_wal, settled_total, settled_db, commits)


def report(runs: dict[str, Figures]) -> str:
    load = os.getloadavg()
    lines = ["# Queue disk use over a drain (bench/queuedisk.py)", "",
             f"Synthetic drain through the store API against an instant target: {ENQUEUE} "
             f"paths per enqueue, claims of {BATCH}, one target. Load average at the end: "
             f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 shared cores).", "",
             "| settings | paths | commits | seconds | peak db+wal+shm | peak WAL | "
             "settled db+wal+shm | settled db |", "|---|---|---|---|---|---|---|---|"]
    for name, f in runs.items():
        lines.append(f"| {name} | {f.paths:,} | {f.commits:,} | {f.seconds:.0f} | "
                     f"{_mib(f.peak_total)} | {_mib(f.peak_wal)} | {_mib(f.settled_total)} | "
                     f"{_mib(f.settled_db)} |")
    lines += ["", "Bytes are blocks on disk (st_blocks). Done rows stay in the database "
              "(status counts them), so the settled size grows with the paths uploaded; "
              "the WAL does not."]
    return "\n".join(lines) + "\n"


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.2f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=None, help="write the report here too")
    parser.add_argument("--with-sqlite-defaults", action="store_true",
                        help="also run with SQLite's defaults, for comparison")
    args = parser.parse_args()
    runs = {}
    variants = [("queue (issue 20)", False)]
    if args.with_sqlite_defaults:
        variants.append(("SQLite defaults", True))
    for name, defaults in variants:
        with tempfile.TemporaryDirectory(prefix="npq-queuedisk-", dir="/var/tmp") as work:
            runs[name] = drain(Path(work), args.paths, sqlite_defaults=defaults)
            print(f"{name}: {runs[name]}", flush=True)
    text = report(runs)
    print(text)
    if args.out is not None:
        args.out.write_text(text, "utf-8")


if __name__ == "__main__":
    main()
