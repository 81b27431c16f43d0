"""`nix-push-queue status [--json]`: per target pending, uploading, done, dead, skipped,
oldest pending age, bytes pending, the upload rate over the last minute and last error (the
daemon's `status` op), and why the daemon's Nix cannot upload to a target, if it cannot
(`unsupported`, e.g. s3:// on a Nix without S3), and targets no longer in its config whose
rows are left (`orphaned`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Mapping

from ..client.progressview import human_bytes
from ..wire.protocol import RATE_WINDOW, SpoolStats, TargetStats
from ._common import add_endpoint_args, connect


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_endpoint_args(parser)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    client, ep = connect(args)
    reply = client.status_reply()
    stats, spool = dict(reply.targets), reply.spool
    if args.json:
        doc = {"targets": {n: _json(s) for n, s in sorted(stats.items())},
               "spool": dataclasses.asdict(spool) if spool is not None else None,
               "trust": list(reply.trust) if reply.trust is not None else None}
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    # GONE: lost before its upload, until `drop`: it left the local store, or (a derivation
    # the hook could not name the outputs of) Nix could not resolve it; the reason is the
    # target's last error. RELEASED: its GC
    # root was released by the cap (queue.gc_roots), still queued or gone since.
    # BYTES: NAR bytes pending or uploading ("+": some not measured yet); RATE: uploaded
    # over the last minute.
    header = ("TARGET", "PENDING", "UPLOADING", "DONE", "DEAD", "SKIPPED", "GONE", "RELEASED",
              "OLDEST", "BYTES", "RATE")
    rows = [header] + [
        (name + (" (orphaned)" if s.orphaned else ""), str(s.pending), str(s.inflight),
         str(s.done), str(s.dead), str(s.skipped), str(s.gone), str(s.released),
         _age(s.oldest_pending_age), _bytes(s), _rate(s))
        for name, s in sorted(stats.items())
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for name, s in sorted(stats.items()):
        if (line := _transport_line(name, s)) is not None:
            print(line)
    for name, s in sorted(stats.items()):
        if s.unsupported:
            print(f"unsupported {name}: {s.unsupported}")
    for name, s in sorted(stats.items()):
        if s.orphaned:
            print(f"orphaned {name}: not in the daemon's config any more; nobody uploads its "
                  f"{s.pending + s.inflight + s.dead} open row(s) and `wait` ignores them; "
                  "`nix-push-queue drop --orphaned` deletes them")
    for name, s in sorted(stats.items()):
        if s.last_error:
            when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.last_error_at))
                    if s.last_error_at else "?")
            print(f"last error {name} ({when}): {s.last_error}")
    if spool is not None:
        print(_spool_line(spool, ep.spool_dir))
    # The daemon's trust check at start (docs/security.md); absent from older daemons.
    for line in reply.trust or ():
        print(line)
    return 0


def _transport_line(name: str, s: TargetStats) -> str | None:
    """An S3 target's transport and why, and what its staged files hold of the cap."""
    if s.transport and s.staging_max_bytes is not None:
        return (f"transport {name}: {s.transport}; staging holds "
                f"{human_bytes(s.staging_bytes)} of {human_bytes(s.staging_max_bytes)}")
    if s.transport and s.transport.startswith("nix (auto"):
        return f"transport {name}: {s.transport}"
    return None


def _spool_line(spool: SpoolStats, spool_dir: str | None) -> str:
    if spool.error is not None:
        return f"spool: cannot be read by the daemon: {spool.error}"
    where = f" (in {spool_dir}/quarantine)" if spool.quarantined and spool_dir else ""
    return (f"spool: {spool.pending} file(s) waiting to be ingested, "
            f"{spool.quarantined} quarantined{where}")


def _json(s: TargetStats) -> dict[str, object]:
    doc: dict[str, object] = dataclasses.asdict(s)
    doc["upload_rate_bytes"] = s.recent_bytes / RATE_WINDOW
    doc["upload_rate_paths"] = s.recent_paths / RATE_WINDOW
    doc["rate_window"] = RATE_WINDOW
    return doc


def _bytes(s: TargetStats) -> str:
    if s.pending + s.inflight == 0:
        return "-"
    return human_bytes(s.bytes_pending).replace(" ", "") + ("+" if s.unsized_pending else "")


def _rate(s: TargetStats) -> str:
    if not s.recent_paths:
        return "-"
    return f"{human_bytes(s.recent_bytes / RATE_WINDOW).replace(' ', '')}/s"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
