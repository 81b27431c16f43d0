"""Scale: enqueue rate through the socket, `status` latency and daemon RSS with a deep queue.

The backlog is real: N tiny files added to an isolated store (`nix-store --add`, so every
row is a valid store path), queued for an HTTP cache that refuses connections (a loopback
port nothing listens on), so the daemon keeps retrying with backoff while the rows pile up,
as during an outage of the cache.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nix_push_queue.nix.isolated import IsolatedNix

from . import product
from .common import BenchResult, call, rss_kib, summary_ms

COLUMNS = [("measure", "measure"), ("value", "value"), ("unit", "unit"), ("detail", "detail")]
CHUNK = 5000  # files per `nix-store --add`, well under ARG_MAX


@dataclass(frozen=True)
class Params:
    rows: int
    hooks: int  # hook runs for the enqueue rate
    concurrency: int
    status_calls: int


def default_params(quick: bool, rows: int | None) -> Params:
    if quick:
        return Params(rows or 500, 48, 16, 5)
    return Params(rows or 100_000, 2000, 16, 30)


def make_paths(nix: IsolatedNix, count: int, work: Path) -> list[str]:
    files = work / "files"
    files.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        f = files / f"row-{i}"
        f.write_text(f"row {i} {time.time_ns()}\n", encoding="ascii")
        names.append(str(f))
    out: list[str] = []
    for i in range(0, count, CHUNK):
        out += call(["nix-store", "--add", *names[i:i + CHUNK]], env=nix.env(),
                   timeout=1800).stdout.split()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _concurrently(jobs: Sequence[Callable[[], None]], concurrency: int) -> float:
    """Run `jobs` on `concurrency` threads; wall seconds."""
    lock = threading.Lock()
    pending = list(jobs)

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                job = pending.pop()
            job()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def _hook_job(layout: product.Layout, nix: IsolatedNix, path: str) -> Callable[[], None]:
    argv = [product.NPQ, "hook", "--socket", str(layout.socket), "--spool-dir",
            str(layout.spool_dir), "--store-dir", str(nix.store_dir), "--state-dir",
            str(nix.state_dir), "--timeout", "10"]
    env = nix.env() | {"OUT_PATHS": path, "DRV_PATH": ""}

    def job() -> None:
        call(argv, env=env, timeout=60)
    return job


def _socket_job(layout: product.Layout, path: str) -> Callable[[], None]:
    def job() -> None:
        reply = product.request(layout.socket, {"op": "enqueue", "paths": [path],
                                                "source": "push"})
        if not reply.get("ok"):
            raise RuntimeError(f"enqueue refused: {reply}")
    return job


def _status_latency(layout: product.Layout, calls: int) -> tuple[list[float], list[float]]:
    raw, cli = [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        product.request(layout.socket, {"op": "status"})
        raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        call([product.NPQ, "status", "--json", "--socket", str(layout.socket)], timeout=60)
        cli.append(time.perf_counter() - t0)
    return raw, cli


def run_scale(workdir: Path, params: Params, log: Callable[[str], None]) -> BenchResult:
    result = BenchResult("scale", "Scale: enqueue rate, status latency, RSS", params.__dict__,
                         COLUMNS)
    nix = IsolatedNix.create(workdir / "nix")
    t0 = time.perf_counter()
    paths = make_paths(nix, params.rows, workdir)
    log(f"scale: added {len(paths)} store paths in {time.perf_counter() - t0:.0f} s")
    layout = product.Layout(workdir / "npq")
    product.write_config(layout, nix, [{"name": "down", "url": f"http://127.0.0.1:{_free_port()}"}])
    rows: list[dict[str, Any]] = []
    try:
        with product.running_daemon(layout, nix) as daemon:
            rows.append({"measure": "daemon RSS, empty queue", "value": rss_kib(daemon.pid) / 1024,
                         "unit": "MiB"})
            hooks = paths[:params.hooks]
            secs = _concurrently([_hook_job(layout, nix, p) for p in hooks], params.concurrency)
            rows.append({"measure": f"enqueue via hook processes ({params.concurrency} at once)",
                         "value": len(hooks) / secs, "unit": "paths/s",
                         "detail": f"{len(hooks)} hooks, 1 path each, {secs:.1f} s"})
            sock_paths = paths[params.hooks:2 * params.hooks]
            secs = _concurrently([_socket_job(layout, p) for p in sock_paths],
                                 params.concurrency)
            rows.append({"measure": f"enqueue via socket ({params.concurrency} clients)",
                         "value": len(sock_paths) / secs, "unit": "paths/s",
                         "detail": "1 path per connection, no interpreter start"})
            rest = paths[2 * params.hooks:]
            t0 = time.perf_counter()
            for i in range(0, len(rest), 10_000):
                product.request(layout.socket, {"op": "enqueue", "paths": rest[i:i + 10_000],
                                                "source": "push"}, timeout=600)
            secs = time.perf_counter() - t0
            if rest:
                rows.append({"measure": "bulk enqueue (10,000 paths per request)",
                             "value": len(rest) / secs, "unit": "paths/s",
                             "detail": f"{len(rest)} paths"})
            totals = product.queue_totals(layout.socket)
            raw, cli = _status_latency(layout, params.status_calls)
            rows += [
                {"measure": "status op latency p50 (socket)", "value": summary_ms(raw)["p50_ms"],
                 "unit": "ms", "detail": f"p99 {summary_ms(raw)['p99_ms']} ms"},
                {"measure": "`nix-push-queue status --json` p50", "value":
                 summary_ms(cli)["p50_ms"], "unit": "ms",
                 "detail": f"p99 {summary_ms(cli)['p99_ms']} ms, incl. interpreter start"},
                {"measure": f"daemon RSS, {params.rows:,} rows queued",
                 "value": rss_kib(daemon.pid) / 1024, "unit": "MiB",
                 "detail": f"peak {rss_kib(daemon.pid, 'VmHWM') / 1024:.1f} MiB; queue {totals}"},
            ]
            result.headline = {
                "hook enqueue paths/s": round(rows[1]["value"], 1),
                f"RSS MiB at {params.rows:,} rows": round(rows[-1]["value"], 1),
                "status p50 ms": rows[-3]["value"],
            }
            queued = totals.get("pending", 0) + totals.get("inflight", 0)
            if queued < len(paths):
                result.notes.append(f"only {queued} of {len(paths)} rows pending or in flight")
    except product.ProductUnavailable as exc:
        result.notes.append(f"not measured: {exc}")
    result.rows = rows
    return result


run = run_scale
