"""The S3 drain through the boto3 transport, against moto with signature checks on.

`python -m bench.s3drain [--paths N] [--max-size BYTES] --out REPORT.md`, on the Nix on PATH
(the matrix roots run it for 2.26 and 2.34). The drain set is drain.py's (log-uniform sizes,
libraries that others refer to), compression and everything else at the schema's defaults.
Rows:
- boto3 transport: the daemon (schema defaults) drains every path into a bucket that checks
  signatures; timed from the enqueue to an empty queue; the staging area's disk sampled
  every 0.1 s (the peak is the "disk held by staging during the backlog");
- nix transport: the same into a bucket open to anonymous writes with `transport: nix`
  (`nix copy --to s3://`), where this Nix has the S3 store;
- ceiling: `nix copy --to file://` of every path (staging, timed apart), then boto3 alone
  uploading those staged files (NARs, then narinfos) with the transport's concurrency;
- two daemons: two queues push overlapping halves of the set into one bucket at once:
  requests and bytes they sent (their metrics) against the unique bytes the bucket holds.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nix_push_queue.config import load_document
from nix_push_queue.daemon.s3 import credentials
from nix_push_queue.daemon.s3.bucket import Bucket, Upload
from nix_push_queue.daemon.s3.staging import parse_narinfo, tree_bytes
from nix_push_queue.daemon.storeurl import TargetKeys, binary_cache_params, with_params
from nix_push_queue.nix import stores
from nix_push_queue.nix.isolated import IsolatedNix

from . import drain, product, s3host
from .common import MIB, call, machine_info


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("npq_s3_requests_total", "npq_s3_sent_bytes_total"):
            if line.startswith(name + "{"):
                found[name] = found.get(name, 0.0) + float(line.split()[-1])
    return found


def _daemon_run(nix: IsolatedNix, root: Path, target: dict[str, Any], paths: list[str],
                env: dict[str, str], timeout: float) -> dict[str, Any]:
    layout = product.Layout(root)
    port = s3host.free_port()
    product.write_config(layout, nix, [target])
    doc = json.loads(layout.config.read_text())
    doc["metrics"] = {"listen": f"127.0.0.1:{port}"}
    layout.config.write_text(json.dumps(doc))
    daemon = product.Daemon(layout, nix)
    old = dict(os.environ)
    os.environ.update(env)
    try:
        daemon.start()
    finally:
        os.environ.clear()
        os.environ.update(old)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_bytes(layout.state_dir / "staging"))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        t0 = time.perf_counter()
        product.request(layout.socket, {"op": "enqueue", "paths": paths, "source": "push"})
        sampler.start()
        if daemon.wait_drained(timeout) is None:
            raise product.ProductUnavailable(f"not drained in {timeout} s: {daemon.tail()}")
        seconds = time.perf_counter() - t0
        return {"seconds": round(seconds, 2), "staging_peak_mib": round(peak[0] / MIB, 1),
                "totals": product.queue_totals(layout.socket), **_scrape(port)}
    finally:
        stop.set()
        daemon.stop()


def _ceiling(nix: IsolatedNix, work: Path, target: dict[str, Any], paths: list[str],
             server: s3host.S3Server, bucket: str) -> dict[str, Any]:
    config = load_document({"version": 1, "targets": [target]}, "<bench>")
    t = config.targets[0]
    stage = work / "stage"
    url = with_params(f"file://{stage}", binary_cache_params(t, TargetKeys.from_target(t)))
    t0 = time.perf_counter()
    call(["nix", "--extra-experimental-features", "nix-command", "copy", "--to", url, *paths],
         env=nix.env(), timeout=3600)
    staged = time.perf_counter() - t0
    where = credentials.location(server.url(direct=True, bucket=bucket))
    key, secret = server.credentials
    env_file = work / "aws.env"
    env_file.write_text(f"AWS_ACCESS_KEY_ID={key}\nAWS_SECRET_ACCESS_KEY={secret}\n")
    s3 = credentials.client(where, credentials.Credentials(env_file=str(env_file)), 32)
    b = Bucket(s3, where, "", lambda: key)
    narinfos = sorted(stage.glob("*.narinfo"))
    nars = [Upload(parse_narinfo(n.read_text()).url, stage / parse_narinfo(n.read_text()).url)
            for n in narinfos]
    t0 = time.perf_counter()
    b.put_many(nars)
    b.put_many(Upload(n.name, n) for n in narinfos)
    uploaded = time.perf_counter() - t0
    return {"stage_s": round(staged, 2), "upload_s": round(uploaded, 2),
            "staged_mib": round(tree_bytes(stage) / MIB, 1), "requests": b.traffic.requests}


def _bucket_bytes(server: s3host.S3Server, bucket: str) -> tuple[int, int]:
    s3 = server._client("s3")
    total = count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            total += int(obj["Size"])
            count += 1
    return total, count


def run(work: Path, paths_n: int, max_size: int, log: Callable[[str], None]
        ) -> dict[str, Any]:
    nix = IsolatedNix.create(work / "nix")
    params = drain.Params(paths_n, 1024, max_size, min(50, paths_n // 4), "none", 1, 1800,
                          http=False, slow_paths=0, rounds=1)
    t0 = time.perf_counter()
    paths, nbytes = drain.make_paths(nix, params)
    log(f"built {len(paths)} paths, {nbytes / MIB:.0f} MiB in {time.perf_counter() - t0:.0f} s")
    key, pub = nix.generate_key("s3drain-1", work)
    out: dict[str, Any] = {"machine": machine_info(), "paths": len(paths),
                           "nar_mib": round(nbytes / MIB, 1), "load_before": os.getloadavg()}
    signed = s3host.S3Server(work / "signed", bucket="drain", auth=True)
    signed.launch()
    creds = signed.write_credentials(work / "aws-credentials")
    env = {"AWS_EC2_METADATA_DISABLED": "true"}
    try:
        for b in ("boto3", "ceiling", "two"):
            signed.add_bucket(b)
        target = {"name": "s3", "url": signed.url(direct=True, bucket="boto3"),
                  "secret_key_file": str(key), "public_key": pub, "transport": "boto3",
                  "credentials_file": str(creds)}
        out["boto3"] = _daemon_run(nix, work / "d-boto3", target, paths, env, 1800)
        out["boto3"]["bucket_bytes"] = _bucket_bytes(signed, "boto3")
        log(f"boto3 transport: {out['boto3']}")
        out["ceiling"] = _ceiling(nix, work / "ceiling", target | {
            "url": signed.url(direct=True, bucket="ceiling")}, paths, signed, "ceiling")
        log(f"ceiling: {out['ceiling']}")
        out["two"] = _two(nix, work, target | {"url": signed.url(direct=True, bucket="two")},
                          paths, env, signed)
        log(f"two daemons: {out['two']}")
    finally:
        signed.close()
    support = stores.s3_support(None, nix.env())
    if support.supported:
        open_ = s3host.S3Server(work / "open", bucket="nix")
        open_.launch()
        try:
            target = {"name": "s3", "url": open_.url(direct=True), "secret_key_file": str(key),
                      "public_key": pub, "transport": "nix"}
            out["nix"] = _daemon_run(nix, work / "d-nix", target, paths, env, 1800)
            log(f"nix transport: {out['nix']}")
        finally:
            open_.close()
    else:
        out["nix"] = f"not measured: {support.reason()}"
    out["load_after"] = os.getloadavg()
    return out


def _two(nix: IsolatedNix, work: Path, target: dict[str, Any], paths: list[str],
         env: dict[str, str], server: s3host.S3Server) -> dict[str, Any]:
    """Two daemons, overlapping halves (the first 60 % and the last 60 %), at once."""
    cut = len(paths) * 2 // 5
    halves = (paths[: len(paths) - cut], paths[cut:])
    results: list[dict[str, Any]] = [{}, {}]

    def one(i: int) -> None:
        results[i] = _daemon_run(nix, work / f"d-two-{i}", target, halves[i], env, 1800)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    unique, objects = _bucket_bytes(server, "two")
    sent = sum(r.get("npq_s3_sent_bytes_total", 0) for r in results)
    return {"daemons": results, "unique_bytes": unique, "objects": objects,
            "sent_bytes": sent, "sent_vs_unique": round(sent / unique, 3) if unique else None,
            "requests": sum(r.get("npq_s3_requests_total", 0) for r in results)}


def render(results: list[dict[str, Any]]) -> str:
    """A markdown report of runs (one per Nix)."""
    lines = ["| Nix | paths (NAR MiB) | boto3 transport s | nix copy --to s3:// s | "
             "staging + boto3 alone s (ceiling) | daemon vs ceiling | staging peak MiB | "
             "requests | two daemons: sent / unique bytes, requests / objects | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        boto, ceil, two = r["boto3"], r["ceiling"], r["two"]
        ceiling = ceil["stage_s"] + ceil["upload_s"]
        nix = r["nix"]["seconds"] if isinstance(r["nix"], dict) else "no S3 store"
        load = f"{r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f}"
        lines.append(
            f"| {r['machine']['nix']} | {r['paths']} ({r['nar_mib']}) | {boto['seconds']} | "
            f"{nix} | {ceil['stage_s']} + {ceil['upload_s']} = {ceiling:.2f} | "
            f"{boto['seconds'] / ceiling:.2f}x | {boto['staging_peak_mib']} | "
            f"{int(boto.get('npq_s3_requests_total', 0))} | "
            f"{two['sent_vs_unique']}x, {int(two['requests'])} / {two['objects']} | {load} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.s3drain", description=__doc__)
    p.add_argument("--paths", type=int, default=1000)
    p.add_argument("--max-size", type=int, default=16 * MIB)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--render", type=Path, nargs="+", metavar="JSON",
                   help="run nothing: print the report of earlier runs")
    args = p.parse_args()
    if args.render:
        print(render([json.loads(f.read_text()) for f in args.render]), end="")
        return
    if args.workdir is None or args.json is None:
        p.error("--workdir and --json are needed to run")
    args.workdir.mkdir(parents=True, exist_ok=True)
    result = run(args.workdir, args.paths, args.max_size, lambda m: print(m, flush=True))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
