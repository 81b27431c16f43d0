"""What users run: the schema's defaults on real content, beside the Nix manual's hook.

Content: store paths of this host's shared libraries and executables (bench/compression.py
stages them), so compression does real work. Two parts:

- drain: the daemon with the schema's defaults (nothing set but the target and its key)
  uploads every path into a fresh file:// cache, timed from the `push` to an empty queue;
  beside it one `nix copy` of the same paths at zstd (the fastest real compression; the
  goal is <= 1.5x of it);
- build loop: N `nix-build`s of small fresh derivations per cell, each timed, the cells
  taking turns (bench/loopcells.py, which says what each cell is): (a) no hook, (b) the
  manual's hook at its defaults (`nix store sign` + `nix copy`, xz), (g) an empty hook, (d)
  our generated hook with no daemon, (c) ours with the daemon up and idle, (e) ours while
  the daemon drains a backlog of real content (bench/backlog.py: each time it has landed,
  the cache loses it and it is pushed again) into a file:// cache on this machine's disk,
  (f) the same into an HTTP cache on another host (nginx in a network namespace, its files
  on a tmpfs), as with S3 or a cache server. Hook time is measured by a /bin/sh wrapper
  around the hook (`date +%s%N` before and after: ~1 ms of it is that).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nix_push_queue.nix.isolated import IsolatedNix

from . import cachehost, compression, loopcells, product
from .common import MIB, BenchResult, summary_ms

Wrap = Callable[[list[str]], list[str]]

COLUMNS = [
    ("part", "part"), ("label", "case"), ("n", "builds / paths"), ("mib", "MiB"),
    ("seconds", "seconds"), ("vs_zstd", "vs nix copy zstd"),
    ("wall_p50_ms", "build p50 ms"), ("wall_p99_ms", "build p99 ms"),
    ("over_p50_ms", "p50 over no hook"), ("over_p99_ms", "p99 over no hook"),
    ("hook_p50_ms", "hook p50 ms"), ("hook_p99_ms", "hook p99 ms"),
    ("backlog_rounds", "backlog drains begun during loop"),
    ("backlog_busy", "share of loop with backlog uploading"),
]


@dataclass(frozen=True)
class Params:
    builds: int
    paths: int  # real-content store paths in the backlog / drain
    mib_per_path: int


def default_params(quick: bool, builds: int | None = None, paths: int | None = None) -> Params:
    if quick:
        return Params(builds or 4, paths or 2, 1)
    return Params(builds or 200, paths or 24, 16)


def real_paths(nix: IsolatedNix, work: Path, params: Params) -> tuple[list[str], int]:
    """`params.paths` store paths of host libraries and executables; their NAR bytes."""
    paths = []
    for i in range(params.paths):
        content = ("libraries", "executables")[i % 2]
        staged = work / f"stage-{i}"
        # each path a different slice of the host's files, so no two are the same
        compression.stage(staged, content, (params.mib_per_path + i // 2) * MIB)
        paths.append(nix.run(["nix-store", "--add", str(staged)]).stdout.strip())
        subprocess.run(["rm", "-rf", str(staged)], check=True)
    sizes = nix.run(["nix-store", "--query", "--size", *paths]).stdout.split()
    return paths, sum(int(s) for s in sizes)


def _copy(nix: IsolatedNix, paths: list[str], cache: Path, key: Path, query: str) -> float:
    t0 = time.perf_counter()
    nix.run(["nix", "copy", "--to", f"file://{cache}?{query}secret-key={key}", *paths],
            timeout=3600)
    return time.perf_counter() - t0


def drain_rows(nix: IsolatedNix, work: Path, paths: list[str], nbytes: int,
               log: Callable[[str], None]) -> list[dict[str, Any]]:
    key, pub = nix.generate_key("bench-1", work)
    mib = round(nbytes / MIB, 1)
    zstd = _copy(nix, paths, work / "copy-zstd", key, "compression=zstd&")
    layout = product.Layout(work / "npq-drain")
    product.write_config(layout, nix, [{"name": "c", "url": f"file://{work / 'daemon-cache'}",
                                        "secret_key_file": str(key), "public_key": pub}])
    with product.running_daemon(layout, nix) as daemon:
        t0 = time.perf_counter()
        product.request(layout.socket, {"op": "enqueue", "paths": paths, "source": "push"})
        drained = daemon.wait_drained(3600)
        seconds = time.perf_counter() - t0 if drained is not None else float("nan")
    log(f"defaults drain: daemon {seconds:.2f} s, nix copy zstd {zstd:.2f} s")
    rows = []
    # (xz, Nix's own default, is in bench/compression.py: ~85x slower than zstd)
    for label, secs in (("daemon, schema defaults", seconds), ("nix copy, zstd", zstd)):
        rows.append({"part": "drain", "label": label, "n": len(paths), "mib": mib,
                     "seconds": round(secs, 2), "vs_zstd": round(secs / zstd, 2)})
    return rows


def run(workdir: Path, params: Params, log: Callable[[str], None]) -> BenchResult:
    result = BenchResult("defaults", "What users run: schema defaults on real content",
                         params.__dict__, COLUMNS)
    nix = IsolatedNix.create(workdir / "nix")
    paths, nbytes = real_paths(nix, workdir, params)
    result.rows += drain_rows(nix, workdir, paths, nbytes, log)
    rows = {cell: {"part": "build loop", "label": cell.label} for cell in loopcells.CELLS}
    with contextlib.ExitStack() as stack:
        blocks = {}
        for cell in loopcells.CELLS:
            if cell.remote and (why := cachehost.unavailable_reason()):
                result.notes.append(f"{cell.label}: not run ({why})")
                continue
            root = workdir / f"cell-{cell.key}"
            cell_nix = IsolatedNix.create(root / "nix")
            backlog = real_paths(cell_nix, root, params)[0] if cell.backlog else []
            blocks[cell] = stack.enter_context(
                loopcells.running(cell_nix, root, cell, backlog, rows[cell]))
        walls = loopcells.in_turns(blocks, params.builds, log)
    for cell in blocks:
        result.rows.append(_loop_row(rows[cell], walls[cell], workdir / f"cell-{cell.key}"))
    loop = [r for r in result.rows if r["part"] == "build loop"]
    for row in loop[1:]:
        row["over_p50_ms"] = round(row["wall_p50_ms"] - loop[0]["wall_p50_ms"], 1)
        row["over_p99_ms"] = round(row["wall_p99_ms"] - loop[0]["wall_p99_ms"], 1)
    floor = summary_ms(product.timing_floor(workdir))["p50_ms"]
    result.notes.append(f"hook times include the timing wrapper's own {floor} ms p50 (its two "
                        "`date` calls around an empty hook, measured on this run)")
    result.notes.append(f"the cells took turns, {loopcells.BLOCK} builds each, after "
                        f"{loopcells.WARMUP} uncounted ones (bench/loopcells.py)")
    result.headline = _headline(result.rows, floor)
    return result


def _loop_row(row: dict[str, Any], walls: list[float], root: Path) -> dict[str, Any]:
    hooks = product.read_timings(root / "hook-timings.txt")[0][loopcells.WARMUP:]
    wall, hk = summary_ms(walls), summary_ms(hooks)
    looks, busy = row.pop("_looks", 0), row.pop("_busy", 0)
    row.update(n=len(walls), wall_p50_ms=wall["p50_ms"], wall_p99_ms=wall["p99_ms"],
               hook_p50_ms=hk["p50_ms"] if hooks else None,
               hook_p99_ms=hk["p99_ms"] if hooks else None)
    if looks:
        row["backlog_busy"] = round(busy / looks, 2)
    return row


def _headline(rows: list[dict[str, Any]], floor: float) -> dict[str, Any]:
    by = {r["label"]: r for r in rows}
    hook = by[loopcells.IDLE.label]["hook_p50_ms"]
    drain = by["daemon, schema defaults"]
    empty = by[loopcells.EMPTY.label]
    head = {
        "drain vs nix copy zstd (goal <= 1.5)": drain["vs_zstd"],
        "hook p50 ms (goal <= 5)": hook,
        "hook p50 ms less the timing wrapper's floor": round(hook - floor, 2),
        "build p50 over no hook with an empty hook (Nix's floor for any hook)":
            empty["over_p50_ms"],
        "build p50 over the empty hook, ours with the daemon stopped":
            round(by[loopcells.DOWN.label]["wall_p50_ms"] - empty["wall_p50_ms"], 1),
    }
    for cell, where in ((loopcells.DRAINING, "file:// here"),
                        (loopcells.REMOTE, "remote cache")):
        if cell.label in by:
            draining = by[cell.label]
            head[f"build p50 over no hook while draining to {where} (goal <= 5 ms)"] = \
                draining["over_p50_ms"]
            head[f"build p99 over no hook while draining to {where} (goal <= 15 ms)"] = \
                draining["over_p99_ms"]
            head[f"build p50 over the empty hook while draining to {where}"] = \
                round(draining["wall_p50_ms"] - empty["wall_p50_ms"], 1)
    return head
