"""Where the time goes: the hook's start-up and the daemon's own cost per uploaded path.

Hook: run directly (not through Nix) many times, daemon up and down, next to the
interpreter's floor; `python -X importtime` names the imports it pays for.
Daemon: CPU seconds of the daemon process itself (utime+stime, children excluded) and of
its `nix` children per path while it drains small paths to a file:// cache; py-spy, when
installed, samples the daemon meanwhile and names its hottest functions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nix_push_queue.nix.isolated import IsolatedNix

from . import product, scale
from .common import BenchResult, call, summary_ms

COLUMNS = [("what", "what"), ("ms", "p50 ms"), ("p99_ms", "p99 ms"), ("detail", "detail")]
PY = sys.executable


@dataclass(frozen=True)
class Params:
    runs: int
    drain_paths: int
    top: int


def default_params(quick: bool) -> Params:
    return Params(runs=8, drain_paths=20, top=5) if quick else Params(200, 1000, 10)


def _time_interleaved(variants: dict[str, tuple[list[str], dict[str, str]]],
                      runs: int) -> dict[str, list[float]]:
    """Wall seconds of each variant, run in turns so that all see the same machine load."""
    out: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, (argv, env) in variants.items():
            t0 = time.perf_counter()
            subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)
            out[name].append(time.perf_counter() - t0)
    return out


def _row(what: str, values: list[float], detail: str = "") -> dict[str, Any]:
    s = summary_ms(values)
    return {"what": what, "ms": s["p50_ms"], "p99_ms": s["p99_ms"], "detail": detail}


def import_costs(argv: list[str], env: dict[str, str], top: int) -> list[tuple[str, float]]:
    """The `top` modules by cumulative import time (ms) for one run of argv under python."""
    proc = subprocess.run([PY, "-X", "importtime", *argv], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    costs = []
    after_site = False  # what the interpreter loads to boot is the floor, not the hook's
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative, name = line.partition(":")[2].split("|", 2)
        # Only top-level imports: nested ones are already inside their parent's figure.
        if name.startswith(" ") and not name[1:].startswith(" "):
            if after_site:
                costs.append((name.strip(), int(cumulative) / 1000))
            after_site = after_site or name.strip() == "site"
    return sorted(costs, key=lambda c: -c[1])[:top]


def _hook_rows(workdir: Path, nix: IsolatedNix, built: str, params: Params,
               result: BenchResult) -> list[dict[str, Any]]:
    layout = product.Layout(workdir / "hook")
    product.write_config(layout, nix, [{"name": "f", "url": f"file://{workdir / 'hc'}"}])

    def hook(sock: Path) -> list[str]:
        return [product.NPQ, "hook", "--socket", str(sock), "--spool-dir",
                str(layout.spool_dir), "--store-dir", str(nix.store_dir), "--state-dir",
                str(nix.state_dir), "--timeout", "2"]

    env = nix.env() | {"OUT_PATHS": built, "DRV_PATH": ""}
    drv = call(["nix-store", "--query", "--deriver", built], env=nix.env()).stdout.strip()
    variants = {
        "python -S -c pass (floor)": ([PY, "-S", "-c", "pass"], env),
        "python -c pass (with site)": ([PY, "-c", "pass"], env),
        "hook, daemon down (spools)": (hook(workdir / "no-daemon.sock"), env),
        "hook, daemon up": (hook(layout.socket), env),
        "hook, daemon up, empty OUT_PATHS (Nix 2.8.0)": (
            hook(layout.socket), env | {"OUT_PATHS": "", "DRV_PATH": drv}),
    }
    with product.running_daemon(layout, nix):
        times = _time_interleaved(variants, params.runs)
        costs = import_costs(hook(layout.socket), env, params.top)
    result.notes.append("hook imports by cumulative time (after the interpreter's own): "
                        + ", ".join(f"{name} {ms:.1f} ms" for name, ms in costs))
    return [_row(name, values) for name, values in times.items()]


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(own utime+stime, reaped children's cutime+cstime) of a process, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def _pyspy_top(pid: int, seconds: float, out: Path, top: int) -> list[tuple[str, int]]:
    exe = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    if not Path(exe).exists():
        return []
    subprocess.run([exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                    "--format", "raw", "--output", str(out), "--rate", "200", "--nonblocking"],
                   capture_output=True, timeout=seconds + 60, check=False)
    own: Counter[str] = Counter()
    if out.exists():
        for line in out.read_text(encoding="utf-8", errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                own[stack.split(";")[-1]] += int(count)
    return own.most_common(top)


def _daemon_rows(workdir: Path, nix: IsolatedNix, paths: list[str], params: Params,
                 result: BenchResult) -> list[dict[str, Any]]:
    layout = product.Layout(workdir / "drain")
    cache = workdir / "cache"
    product.write_config(layout, nix, [{"name": "f", "url": f"file://{cache}"}])
    with product.running_daemon(layout, nix) as daemon:
        own0, kids0 = _cpu_seconds(daemon.pid)
        t0 = time.perf_counter()
        product.request(layout.socket, {"op": "enqueue", "paths": paths, "source": "push"})
        spy_top: list[list[tuple[str, int]]] = []
        spy = threading.Thread(target=lambda: spy_top.append(
            _pyspy_top(daemon.pid, 8, workdir / "pyspy.txt", params.top)))
        if params.drain_paths >= 200:
            spy.start()
        drained = daemon.wait_drained(900)
        secs = time.perf_counter() - t0
        own1, kids1 = _cpu_seconds(daemon.pid)
        if spy.is_alive() or spy_top:
            spy.join()
            result.notes.append("py-spy, the daemon's hottest frames while draining (samples): "
                                + ", ".join(f"{frame} {n}" for frame, n in spy_top[0]))
    n = len(paths)
    if drained is None:
        result.notes.append("daemon did not drain the profiling queue in 900 s")
    return [
        {"what": f"daemon CPU per path (own, {n} small paths)", "ms": (own1 - own0) / n * 1000,
         "p99_ms": None, "detail": f"drained in {secs:.1f} s, {n / secs:.0f} paths/s"},
        {"what": "nix children CPU per path", "ms": (kids1 - kids0) / n * 1000,
         "p99_ms": None, "detail": "nix path-info + nix copy, reaped"},
    ]


def run_profile(workdir: Path, params: Params, log: Callable[[str], None]) -> BenchResult:
    result = BenchResult("profile", "Profile: hook start-up and daemon overhead",
                         params.__dict__, COLUMNS)
    nix = IsolatedNix.create(workdir / "nix")
    paths = scale.make_paths(nix, params.drain_paths, workdir)
    # A real derivation output for the empty-OUT_PATHS case (it needs a deriver).
    built = nix.build_expr('builtins.derivation { name = "p"; system = builtins.currentSystem; '
                           'builder = "/bin/sh"; args = [ "-c" "echo p > $out" ]; }')
    try:
        result.rows = _hook_rows(workdir, nix, str(built[0]), params, result)
        log("profile: hook measured")
        result.rows += _daemon_rows(workdir, nix, paths, params, result)
    except product.ProductUnavailable as exc:
        result.notes.append(f"not measured: {exc}")
    hook_p99 = [r["p99_ms"] for r in result.rows if str(r["what"]).startswith("hook")]
    if hook_p99:
        result.headline = {"hook p99 ms (worst case)": max(hook_p99)}
    return result


run = run_profile
