"""The build loop's cells for bench/defaults.py, run in turns.

Each cell is a fresh Nix with its own hook (and daemon, cache, backlog). The cells take turns
in blocks of BLOCK builds rather than one after another: this machine's speed drifts by 5 to
15 ms a build over minutes (it is shared), more than the differences the goals ask about, and
in turns a drift falls on every cell alike. A draining cell's backlog runs only during its
own blocks: it starts before the block and is drained before the next cell's.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nix_push_queue.nix.isolated import IsolatedNix

from . import cachehost, product
from .backlog import Backlog
from .common import blob_derivation

Wrap = Callable[[list[str]], list[str]]
Block = Callable[[int], list[float]]  # runs that many builds; the wall time of each

BLOCK = 10  # builds per cell per turn
WARMUP = 2  # builds per cell before the first turn, not counted (a fresh store's first)


@dataclass(frozen=True)
class Cell:
    label: str
    backlog: bool  # real content drained during the cell's blocks
    hook: str | None  # None, "manual", "empty", "ours-down" or "ours"
    remote: bool = False  # the target is an HTTP cache on another host, not file:// here

    @property
    def key(self) -> str:
        return self.label[1]  # "(a) …" -> "a": no shell-special characters in paths


# (g) and (d) split what a hook costs a build: Nix running any hook at all (an empty one in
# the same timing wrapper), then our hook's own work (spool entry, roots, fsync) with no
# daemon to pick it up, then what the daemon adds.
CELLS = (Cell("(a) no hook", False, None), Cell("(b) manual's hook, its defaults", False, "manual"),
         Cell("(g) an empty hook, timed as the others", False, "empty"),
         Cell("(d) ours, daemon stopped", False, "ours-down"),
         Cell("(c) ours, daemon up, idle", False, "ours"),
         Cell("(e) ours, daemon draining the backlog", True, "ours"),
         Cell("(f) ours, daemon draining the backlog to a remote cache", True, "ours", True))
NO_HOOK, EMPTY, DOWN, IDLE, DRAINING, REMOTE = (CELLS[0], *CELLS[2:])


def loop(nix: IsolatedNix, n: int) -> list[float]:
    """`n` nix-builds of small fresh derivations, one after another; each one's seconds."""
    nonce, walls = secrets.token_hex(8), []
    for i in range(n):
        expr = blob_derivation(f"loop-{i}", 4096, f"{nonce}-{i}")
        t0 = time.perf_counter()
        proc = subprocess.run(["nix-build", "--no-out-link", "-E", expr], env=nix.env(),
                              capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"nix-build failed: {proc.stderr[-600:]}")
        walls.append(time.perf_counter() - t0)
    return walls


@contextlib.contextmanager
def target(root: Path, remote: bool) -> Iterator[tuple[str, Path, Wrap]]:
    """(URL, the directory its files land in, how to run the daemon) for one cell's cache.

    file:// writes the uploads to this machine's disk, beside the store and the spool. The
    remote cache is nginx WebDAV in its own network namespace (bench/cachehost.py) with its
    files on a tmpfs: another host's disk, which this machine's fsyncs never wait for."""
    if not remote:
        yield f"file://{root / 'cache'}", root / "cache", list
        return
    host = root / "remote"
    host.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "npq-bench", str(host)],
                   check=True)
    try:
        with cachehost.network(host) as net:
            yield net.url, net.cache_dir, net.argv
    finally:
        subprocess.run(["umount", "-l", str(host)], check=False)


@contextlib.contextmanager
def running(nix: IsolatedNix, root: Path, cell: Cell, backlog: list[str],
            row: dict[str, Any]) -> Iterator[Block]:
    """Set up one cell in `nix`, a fresh Nix under `root` (with the `backlog` paths for a
    draining cell); yields how to run a block of it."""
    timings = root / "hook-timings.txt"
    key, pub = nix.generate_key("bench-1", root)
    if cell.hook in (None, "manual", "empty"):
        if cell.hook == "manual":
            script = product.manual_hook(root, key, f"file://{root / 'cache'}")
            product.install_timed_hook(nix, str(script), timings)
        elif cell.hook == "empty":
            product.install_timed_hook(nix, ":", timings)
        yield lambda n: loop(nix, n)
        return
    with target(root, cell.remote) as (url, cache, wrap):
        layout = product.Layout(root / "npq")
        product.write_config(layout, nix, [{"name": "c", "url": url,
                                            "secret_key_file": str(key), "public_key": pub}])
        product.install_timed_hook(nix, product.hook_command(layout), timings)
        if cell.hook == "ours-down":
            yield lambda n: loop(nix, n)
            return
        with product.running_daemon(layout, nix, wrap) as daemon:
            if not backlog:
                yield lambda n: loop(nix, n)
            else:
                yield lambda n: _draining(nix, layout.socket, (backlog, cache), daemon, n, row)
            daemon.wait_drained(3600)


def _draining(nix: IsolatedNix, socket: Path, backlog: tuple[list[str], Path],
              daemon: product.Daemon, n: int, row: dict[str, Any]) -> list[float]:
    """A block with the daemon draining the backlog the whole time (bench/backlog.py), then
    drained, so that the next cell's block runs beside an idle daemon."""
    with Backlog(socket, *backlog) as feeder:
        time.sleep(0.5)  # the workers have started uploading
        walls = loop(nix, n)
    if feeder.error:
        raise RuntimeError(f"the backlog feeder failed: {feeder.error}")
    if daemon.wait_drained(3600) is None:
        raise RuntimeError(f"the daemon did not drain the backlog: {daemon.tail()}")
    row["backlog_rounds"] = row.get("backlog_rounds", 0) + feeder.rounds
    row["_looks"] = row.get("_looks", 0) + feeder.looks
    row["_busy"] = row.get("_busy", 0) + feeder.busy
    return walls


def in_turns(blocks: dict[Cell, Block], builds: int,
             log: Callable[[str], None]) -> dict[Cell, list[float]]:
    """Each cell's build times: WARMUP builds each (dropped), then blocks in turns."""
    walls: dict[Cell, list[float]] = {cell: [] for cell in blocks}
    for run in blocks.values():
        run(WARMUP)
    turns = max(1, builds // BLOCK)
    for turn in range(turns):
        for cell, run in blocks.items():
            walls[cell] += run(min(BLOCK, builds))
        log(f"build loop: turn {turn + 1} of {turns} done")
    return walls
