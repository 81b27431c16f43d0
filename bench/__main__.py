"""`python -m bench` (or `bench/run`): run the benchmarks and write their reports.

Sub-benchmarks: buildloop (hook cost per network profile), drain (upload throughput), scale
(enqueue rate, status latency and RSS with a deep queue), profile (where the time goes),
compression (binary-cache compression methods on real content), defaults (schema defaults
on real content: drain and build loop beside the manual's hook).
`--quick` runs every one with tiny sizes in about a minute, for the smoke test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import buildloop, cachehost, compression, defaults, drain, plots, profiling, report, scale
from .common import REPO, BenchResult, machine_info

BENCHES = ("buildloop", "drain", "scale", "profile", "compression", "defaults")
log = logging.getLogger("bench")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes: seconds to a minute")
    p.add_argument("--only", action="append", choices=BENCHES, help="run only these (repeat)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--workdir", type=Path, help="keep scratch files here (default: a temp dir)")
    p.add_argument("--profiles", default=",".join(cachehost.PROFILES),
                   help="network profiles for buildloop (comma separated)")
    p.add_argument("--n", type=int, help="buildloop derivations per cell (default 200)")
    p.add_argument("--paths", type=int, help="drain store paths (default 1000)")
    p.add_argument("--rows", type=int, help="scale pending rows (default 100000)")
    p.add_argument("--budget", type=float, help="buildloop seconds per cell (default 120)")
    p.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                   help="run nothing: re-render the report and plots of an earlier run")
    p.add_argument("--docs", action="store_true",
                   help="also copy the report to docs/benchmarks.md (full runs)")
    return p


def _run_one(name: str, args: argparse.Namespace, workdir: Path) -> BenchResult:
    quick = args.quick
    if name == "buildloop":
        reason = cachehost.unavailable_reason()
        if reason:
            return BenchResult(name, "Build-loop cost of the post-build hook", {}, [],
                               skipped=reason)
        profiles = tuple(p for p in args.profiles.split(",") if p in cachehost.PROFILES)
        params = buildloop.Params(
            n=args.n or (2 if quick else 200), output_size=4096 if quick else 64 * 1024,
            budget_s=args.budget or (30 if quick else 120),
            profiles=profiles, drain_timeout_s=60 if quick else 300)
        return buildloop.run(workdir, params, cachehost.Network, log.info)
    if name == "drain":
        return drain.run(workdir, drain.default_params(quick, args.paths), log.info)
    if name == "defaults":
        return defaults.run(workdir, defaults.default_params(quick, args.n, args.paths),
                            log.info)
    if name == "compression":
        return compression.run(workdir, compression.default_params(quick), log.info)
    if name == "scale":
        return scale.run(workdir, scale.default_params(quick, args.rows), log.info)
    return profiling.run(workdir, profiling.default_params(quick), log.info)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.render:
        return _render(args)
    started = time.monotonic()
    # SIGTERM unwinds like Ctrl-C, so every `finally` removes its namespaces and daemons.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if cachehost.unavailable_reason() is None:
        for name in cachehost.reap_stale():
            log.info("removed namespace %s left by a run that died", name)
    scratch = args.workdir or Path(tempfile.mkdtemp(prefix="npq-bench-"))
    results: list[BenchResult] = []
    try:
        for name in args.only or BENCHES:
            t0, load0 = time.monotonic(), os.getloadavg()[0]
            log.info("== %s", name)
            (scratch / name).mkdir(parents=True, exist_ok=True)
            result = _run_one(name, args, scratch / name)
            result.seconds = time.monotonic() - t0
            # The machine is shared: say how busy it was, since every figure depends on it.
            result.notes.append(f"load average (1 min) before/after: {load0:.1f} / "
                                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            results.append(result)
    finally:
        if args.workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    meta = {"machine": machine_info(), "mode": "quick" if args.quick else "full",
            "seconds": time.monotonic() - started, "argv": list(argv or sys.argv[1:])}
    files = report.write(args.out, results, meta, plots.PLOTTERS)
    if args.docs:
        _publish(files, args.out)
    log.info("report: %s", files["md"])
    return 0


def _render(args: argparse.Namespace) -> int:
    doc = json.loads(args.render.read_text(encoding="utf-8"))
    results = []
    for r in doc["results"]:
        result = BenchResult(r["name"], r["title"], r["params"],
                             [(k, h) for k, h in r["columns"]], r["rows"], r["headline"],
                             r["notes"], r["skipped"], r["seconds"])
        results.append(result)
    files = report.write(args.out, results, doc["meta"], plots.PLOTTERS)
    if args.docs:
        _publish(files, args.out)
    log.info("report: %s", files["md"])
    return 0


LATEST = "## Latest results\n"


def _publish(files: dict[str, Path], out: Path) -> None:
    """docs/benchmarks.md: its hand-written part (methodology, notes) kept, the latest table
    below it replaced, with plot links relative to docs/."""
    text = files["md"].read_text(encoding="utf-8")
    rel = Path("..") / out.resolve().relative_to(REPO)
    for name in list(plots.PLOTTERS):
        text = text.replace(f"]({name}.png)", f"]({rel / name}.png)")
    # The run's own title is dropped: the page above has one.
    text = text.split("\n", 1)[1].lstrip("\n")
    page = REPO / "docs" / "benchmarks.md"
    header = page.read_text(encoding="utf-8").split(LATEST, 1)[0]
    page.write_text(header + LATEST + "\n" + text.replace("\n## ", "\n### "), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
