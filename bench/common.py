"""Shared pieces of the benchmarks: statistics, result records, processes, derivations."""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nix_push_queue.nix.isolated import shell_derivation

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """p50/p99/max/mean of durations given in seconds, in milliseconds."""
    if not values:
        return {"p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan, "mean_ms": math.nan}
    return {
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
        "mean_ms": round(sum(values) / len(values) * 1000, 2),
    }


@dataclass
class BenchResult:
    """What one sub-benchmark measured: rows for the table, figures for the headline."""

    name: str
    title: str
    params: dict[str, Any]
    columns: list[tuple[str, str]]  # (row key, column heading)
    rows: list[dict[str, Any]] = field(default_factory=list)
    headline: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title, "params": self.params,
            "columns": self.columns, "rows": self.rows, "headline": self.headline,
            "notes": self.notes, "skipped": self.skipped, "seconds": round(self.seconds, 1),
        }


def machine_info() -> dict[str, Any]:
    def first_line(argv: Sequence[str]) -> str:
        try:
            out = subprocess.run(list(argv), capture_output=True, text=True, timeout=30,
                                 check=False).stdout
        except OSError:
            return "?"
        return out.strip().splitlines()[0] if out.strip() else "?"

    mem_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kib / MIB, 1),
        "kernel": os.uname().release,
        "nix": first_line(["nix", "--version"]),
        "python": first_line([os.environ.get("NPQ_PYTHON", "python3"), "--version"]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def call(argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 600,
        check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), env=None if env is None else dict(env), input=input,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} ... exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident set size (VmRSS; VmHWM: its peak) of a process from /proc; 0 when gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def blob_derivation(name: str, size: int, nonce: str, deps: Iterable[str] = ()) -> str:
    """A derivation (no nixpkgs) whose output is `size` random bytes plus its deps' paths.

    Random bytes: compression cannot shrink them, so every byte is really moved.
    """
    return shell_derivation(
        name, f"/usr/bin/head -c {size} /dev/urandom > $out; echo $nonce >> $out",
        attrs={"nonce": nonce}, deps=list(deps))


def fmt(value: Any) -> str:
    """A table cell: numbers rounded for reading, NaN and None as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value)
    return str(value)
