"""How fast the queue drains: store paths of mixed sizes pushed to a file://, an HTTP and an
S3 cache (moto's S3 server on the loopback, bench/s3host.py, on a Nix with the S3 store).

Methods, each into a fresh empty cache:
- daemon: all paths enqueued at once; the daemon's batching and concurrency (schema defaults)
  upload them; timed from the enqueue to an empty queue;
- per-path: one `nix copy` per path, one after the other (what a hook that copies does);
- single call (ceiling): one `nix copy` of every path;
- dd: raw write speed of the cache's disk (`dd conv=fsync` of the same number of bytes).
Every nix copy signs with `?secret-key=` as the daemon does; compression is a parameter.
S3 skips the per-path method (a thousand `nix copy` runs; the HTTP cache shows that cost).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nix_push_queue.nix import dialect, stores
from nix_push_queue.nix.isolated import IsolatedNix
from nix_push_queue.nix.pathinfo import parse_path_infos

from . import product, s3host
from .cachehost import Network, unavailable_reason
from .common import MIB, BenchResult, blob_derivation, call

COLUMNS = [
    ("cache", "cache"), ("method", "method"), ("paths", "paths"), ("seconds", "seconds"),
    ("paths_per_s", "paths/s"), ("mib_per_s", "MiB/s"), ("vs_ceiling", "time vs ceiling"),
    ("in_cache", "narinfos in cache"), ("rounds_s", "each round s"),
]


@dataclass(frozen=True)
class Params:
    paths: int
    min_size: int
    max_size: int
    libs: int  # paths that others reference
    compression: str
    seed: int
    timeout_s: float
    http: bool
    slow_paths: int  # 64 KiB paths pushed over the slow profile; 0 skips that part
    rounds: int  # turns of ceiling and daemon; the best of each is reported
    s3: bool = True  # also an S3 cache, where this Nix has the S3 store and moto is installed


def default_params(quick: bool, paths: int | None) -> Params:
    if quick:
        return Params(paths or 20, 1024, 256 * 1024, 4, "none", 1, 120, http=False,
                      slow_paths=0, rounds=1)
    return Params(paths or 1000, 1024, 16 * MIB, 50, "none", 1, 900, http=True, slow_paths=48,
                  rounds=2)


def _sizes(params: Params) -> list[int]:
    """Log-uniform sizes: mostly small paths, a few large ones, as in a real store."""
    rng = random.Random(params.seed)
    lo, hi = math.log(params.min_size), math.log(params.max_size)
    return [int(math.exp(rng.uniform(lo, hi))) for _ in range(params.paths)]


def make_paths(nix: IsolatedNix, params: Params) -> tuple[list[str], int]:
    """Build the paths (one nix-build, 2 jobs); returns them and their total NAR bytes."""
    rng = random.Random(params.seed + 1)
    nonce = f"{time.time_ns()}"
    sizes = _sizes(params)
    libs = [blob_derivation(f"lib-{i}", sizes[i], nonce) for i in range(params.libs)]
    exprs = list(libs)
    for i in range(params.libs, params.paths):
        deps = rng.sample(range(params.libs), k=min(params.libs, rng.randint(0, 3)))
        exprs.append(blob_derivation(f"app-{i}", sizes[i], nonce, [f"(lib {d})" for d in deps]))
    lib_list = " ".join(f"({e})" for e in libs)
    expr = ("let libs = [ " + lib_list + " ]; lib = n: builtins.elemAt libs n; in [ "
            + " ".join(f"({e})" for e in exprs) + " ]")
    expr_file = nix.root / "drain.nix"
    expr_file.write_text(expr, encoding="utf-8")
    out = call(["nix-build", "--no-out-link", "--max-jobs", "2", str(expr_file)],
              env=nix.env(), timeout=3600).stdout.split()
    infos = parse_path_infos(call(dialect.detect(None, nix.env()).path_info_json(out),
                                  env=nix.env()).stdout)
    return out, sum(i.nar_size or 0 for i in infos)


def _url(base: str, key: Path, compression: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}compression={compression}&secret-key={key}"


def _row(cache: str, method: str, paths: int, seconds: float, nbytes: int,
         in_cache: int | None) -> dict[str, Any]:
    return {"cache": cache, "method": method, "paths": paths, "seconds": round(seconds, 2),
            "paths_per_s": round(paths / seconds, 1) if seconds else None,
            "mib_per_s": round(nbytes / MIB / seconds, 1) if seconds else None,
            "in_cache": in_cache}


def _per_path(nix: IsolatedNix, paths: list[str], url: str,
              wrap: Callable[[list[str]], list[str]]) -> float:
    t0 = time.perf_counter()
    for p in paths:
        call(wrap(["nix", "copy", "--to", url, p]), env=nix.env())
    return time.perf_counter() - t0


def _single(nix: IsolatedNix, paths: list[str], url: str,
            wrap: Callable[[list[str]], list[str]]) -> float:
    t0 = time.perf_counter()
    call(wrap(["nix", "copy", "--to", url, *paths]), env=nix.env(), timeout=3600)
    return time.perf_counter() - t0


def _daemon(nix: IsolatedNix, paths: list[str], target: dict[str, Any], root: Path,
            wrap: Callable[[list[str]], list[str]], timeout: float,
            queue: dict[str, Any] | None = None) -> tuple[float, dict[str, int]]:
    layout = product.Layout(root)
    product.write_config(layout, nix, [target], queue)
    with product.running_daemon(layout, nix, wrap) as daemon:
        t0 = time.perf_counter()
        reply = product.request(layout.socket, {"op": "enqueue", "paths": paths,
                                                "source": "push"})
        if not reply.get("ok") or reply.get("queued") != len(paths):
            raise product.ProductUnavailable(f"enqueue did not queue every path: {reply}")
        if daemon.wait_drained(timeout) is None:
            raise product.ProductUnavailable(f"queue not drained within {timeout} s")
        seconds = time.perf_counter() - t0
        return seconds, product.queue_totals(layout.socket)


def _dd(directory: Path, nbytes: int) -> float:
    target = directory / "dd.bin"
    count = max(1, nbytes // MIB)
    t0 = time.perf_counter()
    call(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={count}", "conv=fsync"],
        timeout=3600)
    seconds = time.perf_counter() - t0
    target.unlink()
    return seconds * nbytes / (count * MIB)


# A fresh empty cache for a method: its store URL, and how to count the narinfos in it.
CacheMaker = Callable[[str], tuple[str, Callable[[], int]]]


def _dir_cache(url: str, directory: Path) -> tuple[str, Callable[[], int]]:
    return url, lambda: product.narinfo_count(directory)


def _one_cache(result: BenchResult, cache: str, nix: IsolatedNix, paths: list[str],
               nbytes: int, base: CacheMaker,
               wrap: Callable[[list[str]], list[str]], work: Path, params: Params,
               log: Callable[[str], None], *, per_path: bool = True) -> None:
    """Ceiling and daemon take turns for `params.rounds` rounds, each into a fresh cache;
    the best round of each is reported (the machine is shared, and noise only slows)."""
    work.mkdir(parents=True, exist_ok=True)
    key, pub = nix.generate_key("drain-1", work)
    runs: dict[str, list[tuple[float, int, dict[str, int] | None]]] = {"single": [],
                                                                      "daemon": []}
    for n in range(params.rounds):
        url, count = base(f"single-{n}")
        secs = _single(nix, paths, _url(url, key, params.compression), wrap)
        runs["single"].append((secs, count(), None))
        url, count = base(f"daemon-{n}")
        target = {"name": "drain", "url": url, "secret_key_file": str(key),
                  "public_key": pub, "compression": params.compression}
        if url.startswith("s3://"):
            # `nix copy --to s3://` as the ceiling row; the boto3 transport, which `auto`
            # takes on a Nix that does not sign, is bench/s3drain.py's.
            target["transport"] = "nix"
        try:
            secs, totals = _daemon(nix, paths, target, work / f"daemon-{n}", wrap,
                                   params.timeout_s)
        except product.ProductUnavailable as exc:
            result.notes.append(f"{cache} daemon: not measured: {exc}")
            continue
        runs["daemon"].append((secs, count(), totals))
    rows: list[dict[str, Any]] = []
    for key_, method in (("single", "single nix copy (ceiling)"),
                         ("daemon", "nix-push-queue daemon")):
        if runs[key_]:
            best = min(runs[key_], key=lambda r: r[0])
            row = _row(cache, method, len(paths), best[0], nbytes, best[1])
            row["rounds_s"] = [round(r[0], 2) for r in runs[key_]]
            row["queue"] = best[2]
            rows.append(row)
    if per_path:
        url, count = base("per-path")
        secs = _per_path(nix, paths, _url(url, key, params.compression), wrap)
        rows.append(_row(cache, "one nix copy per path", len(paths), secs, nbytes, count())
                    | {"rounds_s": [round(secs, 2)]})
    ceiling = rows[0]["seconds"]
    for row in rows:
        if row["in_cache"] != len(paths):
            result.notes.append(f"{cache} {row['method']}: only {row['in_cache']} of "
                                f"{len(paths)} narinfos in the cache")
        row["vs_ceiling"] = round(row["seconds"] / ceiling, 2) if ceiling else None
        log(f"drain {cache} {row['method']}: {row['rounds_s']} s")
    result.rows.extend(rows)


def run_drain(workdir: Path, params: Params, log: Callable[[str], None]) -> BenchResult:
    result = BenchResult("drain", "Drain throughput", params.__dict__, COLUMNS)
    nix = IsolatedNix.create(workdir / "nix")
    t0 = time.perf_counter()
    paths, nbytes = make_paths(nix, params)
    log(f"drain: built {len(paths)} paths, {nbytes / MIB:.0f} MiB in "
        f"{time.perf_counter() - t0:.0f} s")
    result.params = params.__dict__ | {"total_mib": round(nbytes / MIB, 1)}
    files = workdir / "file-caches"

    def file_base(method: str) -> tuple[str, Callable[[], int]]:
        d = files / method
        d.mkdir(parents=True, exist_ok=True)
        return _dir_cache(f"file://{d}", d)

    _one_cache(result, "file://", nix, paths, nbytes, file_base, list, workdir / "file",
               params, log)
    dd_secs = _dd(files, nbytes)
    result.rows.append(_row("file://", "dd conv=fsync (disk)", 0, dd_secs, nbytes, None)
                       | {"paths": None, "paths_per_s": None})
    reason = unavailable_reason() if params.http else "HTTP cache skipped in quick mode"
    if reason:
        result.notes.append(f"HTTP cache: {reason}")
    else:
        net = Network(workdir / "net")
        net.open()
        try:
            def http_base(method: str) -> tuple[str, Callable[[], int]]:
                return _dir_cache(f"{net.url}/{method}", net.cache_dir / method)

            _one_cache(result, "http:// (nginx, netns)", nix, paths, nbytes, http_base,
                       net.argv, workdir / "http", params, log)
            if params.slow_paths:
                _slow_link(result, net, workdir / "slow", params, log)
        finally:
            net.close()
    if params.s3:
        _s3(result, nix, paths, nbytes, workdir / "s3", params, log)
    daemon = [r for r in result.rows if r["method"] == "nix-push-queue daemon"]
    for row in daemon:
        result.headline[f"{row['cache']} daemon vs ceiling"] = row["vs_ceiling"]
    return result


def _slow_link(result: BenchResult, net: Network, work: Path, params: Params,
               log: Callable[[str], None]) -> None:
    """Small paths over 200 ms RTT: where latency, not bytes, sets the pace.

    Nix 2.8's `nix copy` to an HTTP cache handles a batch's paths one after the other, a few
    round trips each, so batching gains little there and concurrent uploads gain a lot.
    """
    nix = IsolatedNix.create(work / "nix")
    nonce = str(time.time_ns())
    exprs = " ".join(f"({blob_derivation(f's-{i}', 64 * 1024, nonce)})"
                     for i in range(params.slow_paths))
    paths = call(["nix-build", "--no-out-link", "-E", f"[ {exprs} ]"], env=nix.env(),
                 timeout=900).stdout.split()
    nbytes = params.slow_paths * 64 * 1024
    key, pub = nix.generate_key("slow-1", work)
    net.apply("slow")
    cache = "http:// slow (200 ms RTT, 10 Mbit/s)"
    rows = []
    url = f"{net.url}/slow-single"
    secs = _single(nix, paths, _url(url, key, params.compression), net.argv)
    rows.append(_row(cache, "single nix copy (ceiling)", len(paths), secs, nbytes,
                     product.narinfo_count(net.cache_dir / "slow-single")))
    for label, sub, queue in (
            ("nix-push-queue daemon (defaults)", "slow-default", None),
            ("nix-push-queue daemon (workers 8, batch_size 4)", "slow-tuned",
             {"workers": 8, "batch_size": 4})):
        target = {"name": "slow", "url": f"{net.url}/{sub}", "secret_key_file": str(key),
                  "public_key": pub, "compression": params.compression}
        try:
            secs, _ = _daemon(nix, paths, target, work / sub, net.argv, params.timeout_s, queue)
        except product.ProductUnavailable as exc:
            result.notes.append(f"{cache} {label}: not measured: {exc}")
            continue
        rows.append(_row(cache, label, len(paths), secs, nbytes,
                         product.narinfo_count(net.cache_dir / sub)))
    net.apply("normal")
    for row in rows:
        row["vs_ceiling"] = round(row["seconds"] / rows[0]["seconds"], 2)
        log(f"drain {cache} {row['method']}: {row['seconds']} s")
    result.rows.extend(rows)


def _s3(result: BenchResult, nix: IsolatedNix, paths: list[str], nbytes: int, work: Path,
        params: Params, log: Callable[[str], None]) -> None:
    """The same paths into S3 buckets on moto's server (straight to moto, no proxy)."""
    support = stores.s3_support(None, nix.env())
    if not support.supported:
        result.notes.append(f"S3 cache: not measured: {support.reason()}")
        return
    if not s3host.MOTO_SERVER.exists():
        result.notes.append("S3 cache: not measured: moto_server is not installed "
                            "(pip install -e '.[test]')")
        return
    server = s3host.S3Server(work / "server", bucket="drain")
    server.launch()
    try:
        def s3_base(method: str) -> tuple[str, Callable[[], int]]:
            server.add_bucket(method)
            return (server.url(direct=True, bucket=method),
                    lambda: sum(k.endswith(".narinfo") for k in server.keys(bucket=method)))

        _one_cache(result, "s3:// (moto, loopback)", nix, paths, nbytes, s3_base, list,
                   work, params, log, per_path=False)
    finally:
        server.close()


run = run_drain
