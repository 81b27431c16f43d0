"""What the post-build hook costs the build loop, per network profile.

N derivations, each built by its own `nix-build` (so Nix runs the hook N times, one after
the other, as on a builder working through a queue of jobs), with:
  (a) no hook;
  (b) the Nix manual's hook: `nix store sign` and `nix copy` inside the hook;
  (c) nix-push-queue's hook with the daemon up (it uploads in the background meanwhile);
  (d) nix-push-queue's hook with the daemon down (the hook spools).
Wall time per build is measured around `nix-build`; hook time inside the hook's wrapper.
A cell stops early when it exceeds its time budget; `builds` says how many ran.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nix_push_queue.nix.isolated import IsolatedNix

from . import product
from .cachehost import Network, Profile
from .common import BenchResult, blob_derivation, summary_ms

Variant = Literal["a-no-hook", "b-manual-hook", "c-queue-up", "d-queue-down"]
VARIANTS: tuple[Variant, ...] = ("a-no-hook", "b-manual-hook", "c-queue-up", "d-queue-down")
LABELS: dict[Variant, str] = {
    "a-no-hook": "(a) no hook",
    "b-manual-hook": "(b) manual's hook (nix copy in hook)",
    "c-queue-up": "(c) nix-push-queue, daemon up",
    "d-queue-down": "(d) nix-push-queue, daemon down",
}

COLUMNS = [
    ("profile", "network"), ("label", "variant"), ("builds", "builds"),
    ("failed", "failed builds"), ("wall_mean_ms", "wall/build mean ms"),
    ("wall_p50_ms", "wall p50 ms"), ("wall_p99_ms", "wall p99 ms"),
    ("hook_p50_ms", "hook p50 ms"), ("hook_p99_ms", "hook p99 ms"),
    ("uploaded", "in cache"), ("spooled", "spooled"), ("drain_s", "drained after loop s"),
]


@dataclass(frozen=True)
class Params:
    n: int
    output_size: int
    budget_s: float  # per cell
    profiles: tuple[Profile, ...]
    drain_timeout_s: float


@dataclass
class Cell:
    variant: Variant
    profile: Profile
    root: Path
    nix: IsolatedNix
    layout: product.Layout
    cache_sub: str
    timings: Path


def _build_all(cell: Cell, net: Network, params: Params) -> tuple[list[float], int]:
    nonce = secrets.token_hex(8)
    walls: list[float] = []
    failed = 0
    start = time.monotonic()
    for i in range(params.n):
        if time.monotonic() - start > params.budget_s:
            break
        expr = blob_derivation(f"loop-{i}", params.output_size, f"{nonce}-{i}")
        t0 = time.perf_counter()
        proc = subprocess.run(net.argv(["nix-build", "--no-out-link", "-E", expr]),
                              env=cell.nix.env(), capture_output=True, timeout=900, check=False)
        walls.append(time.perf_counter() - t0)
        failed += proc.returncode != 0
    return walls, failed


def _new_cell(variant: Variant, profile: Profile, workdir: Path, net: Network) -> Cell:
    root = workdir / f"{profile}-{variant}"
    nix = IsolatedNix.create(root / "nix")
    return Cell(variant, profile, root, nix, product.Layout(root / "npq"),
                f"{profile}-{variant}", root / "hook-timings.txt")


def run_cell(variant: Variant, profile: Profile, workdir: Path, net: Network,
             params: Params) -> dict[str, Any]:
    cell = _new_cell(variant, profile, workdir, net)
    url = f"{net.url}/{cell.cache_sub}"
    key, pub = cell.nix.generate_key("bench-1", cell.root)
    row: dict[str, Any] = {"profile": profile, "variant": variant, "label": LABELS[variant]}
    if variant == "b-manual-hook":
        script = product.manual_hook(cell.root, key, url)
        product.install_timed_hook(cell.nix, str(script), cell.timings)
    elif variant in ("c-queue-up", "d-queue-down"):
        product.write_config(cell.layout, cell.nix, [
            {"name": "bench", "url": url, "secret_key_file": str(key), "public_key": pub}])
        product.install_timed_hook(cell.nix, product.hook_command(cell.layout),
                                   cell.timings)
    if variant == "c-queue-up":
        with product.running_daemon(cell.layout, cell.nix, net.argv) as daemon:
            walls, failed = _build_all(cell, net, params)
            timeout = 0.0 if profile == "down" else params.drain_timeout_s
            drained = daemon.wait_drained(timeout) if timeout else None
            row["drain_s"] = round(drained, 2) if drained is not None else None
            row["queue_after"] = product.queue_totals(cell.layout.socket)
    else:
        walls, failed = _build_all(cell, net, params)
    hooks, hook_failures = product.read_timings(cell.timings)
    wall, hook = summary_ms(walls), summary_ms(hooks)
    row.update(builds=len(walls), failed=failed, hook_failures=hook_failures,
               wall_mean_ms=wall["mean_ms"], wall_p50_ms=wall["p50_ms"],
               wall_p99_ms=wall["p99_ms"], hook_p50_ms=hook["p50_ms"],
               hook_p99_ms=hook["p99_ms"], hook_max_ms=hook["max_ms"],
               uploaded=product.narinfo_count(net.cache_dir / cell.cache_sub)
               if variant in ("b-manual-hook", "c-queue-up") else None,
               spooled=product.spooled_paths(cell.layout) if variant == "d-queue-down"
               else None)
    return row


def _headline(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["profile"], r["variant"]): r for r in rows}
    out: dict[str, Any] = {}
    for profile in dict.fromkeys(r["profile"] for r in rows):
        b, c = by.get((profile, "b-manual-hook")), by.get((profile, "c-queue-up"))
        if b and c and c.get("wall_mean_ms"):
            out[f"{profile}: (b)/(c) wall per build"] = round(
                b["wall_mean_ms"] / c["wall_mean_ms"], 1)
    return out


def run(workdir: Path, params: Params, net_factory: Callable[[Path], Network],
        log: Callable[[str], None]) -> BenchResult:
    result = BenchResult("buildloop", "Build-loop cost of the post-build hook",
                         params.__dict__ | {"profiles": ",".join(params.profiles)}, COLUMNS)
    net = net_factory(workdir / "net")
    net.open()
    try:
        for profile in params.profiles:
            net.apply(profile)
            for variant in VARIANTS:
                t0 = time.monotonic()
                try:
                    row = run_cell(variant, profile, workdir, net, params)
                except product.ProductUnavailable as exc:
                    result.notes.append(f"{profile} {LABELS[variant]}: not measured: {exc}")
                    log(f"buildloop {profile} {variant}: product unavailable: {exc}")
                    continue
                result.rows.append(row)
                log(f"buildloop {profile} {variant}: {row['builds']} builds, "
                    f"wall mean {row['wall_mean_ms']} ms, hook p99 {row['hook_p99_ms']} ms "
                    f"({time.monotonic() - t0:.0f} s)")
    finally:
        net.close()
    result.headline = _headline(result.rows)
    result.notes.append(
        "Hook time is measured by a /bin/sh wrapper with `date +%s%N` around the hook "
        "(about 1 ms of the figure is the wrapper itself).")
    return result
