"""Smoke run of the benchmarks: `python -m bench --quick` runs and writes a well-formed report.

Asserts nothing about the figures (benchmarks measure, they do not judge); only that every
sub-benchmark ran or said why not, and that the JSON, Markdown and PNG files are complete.
The drain benchmark's S3 cache is measured exactly where this Nix has the S3 store (sid's
2.34), and elsewhere skipped with the reason the product itself gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nix_push_queue.nix import stores

pytestmark = pytest.mark.integration

BENCHES = {"buildloop", "drain", "scale", "profile", "compression", "defaults"}
S3_CACHE = "s3:// (moto, loopback)"


def test_quick_bench_writes_a_well_formed_report(tmp_path: Path, repo: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out),
         "--workdir", str(tmp_path / "work")],
        cwd=repo, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]

    doc = json.loads((out / "results.json").read_text())
    assert doc["meta"]["mode"] == "quick"
    results = {r["name"]: r for r in doc["results"]}
    assert set(results) == BENCHES
    for name, result in results.items():
        if result["skipped"]:
            # Only the netns benchmark may be skipped, and only where it cannot run.
            assert name == "buildloop" and os.geteuid() != 0, result["skipped"]
            continue
        assert result["rows"], f"{name} measured nothing: {result['notes']}"
        keys = [key for key, _ in result["columns"]]
        for row in result["rows"]:
            # Each row names what it measured and carries at least one figure.
            assert row.get(keys[0]) not in (None, ""), (name, row)
            assert any(isinstance(row.get(k), int | float) for k in keys[1:]), (name, row)
        notes = result["notes"]
        if name == "drain":
            notes = _check_drain_s3(result["rows"], notes)
        assert not [n for n in notes if "not measured" in n], notes

    md = (out / "results.md").read_text()
    for result in doc["results"]:
        assert f"## {result['title']}" in md
    for name, png in doc["plots"].items():
        data = (out / png).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, name
    assert set(doc["plots"]) >= {"drain", "scale", "profile"}
    if not results["buildloop"]["skipped"]:
        _check_buildloop(results["buildloop"]["rows"])


def _check_drain_s3(rows: list[dict[str, object]], notes: list[str]) -> list[str]:
    """S3 measured (ceiling and daemon) on a Nix with the S3 store, else skipped with this
    Nix's reason; returns the other notes."""
    support = stores.s3_support(None, os.environ)
    s3_rows = {str(r["method"]) for r in rows if r["cache"] == S3_CACHE}
    s3_notes = [n for n in notes if n.startswith("S3 cache") or n.startswith(S3_CACHE)]
    if support.supported:
        assert s3_rows == {"single nix copy (ceiling)", "nix-push-queue daemon"}, notes
        assert not s3_notes, s3_notes
    else:
        assert not s3_rows, s3_rows
        assert s3_notes == [f"S3 cache: not measured: {support.reason()}"], notes
    return [n for n in notes if n not in s3_notes]


def _check_buildloop(rows: list[dict[str, object]]) -> None:
    """Every build ran its hook, and every output reached the cache or the spool."""
    cells = {(r["profile"], r["variant"]): r for r in rows}
    assert {v for _, v in cells} == {"a-no-hook", "b-manual-hook", "c-queue-up",
                                      "d-queue-down"}
    for (profile, variant), row in cells.items():
        assert row["builds"] == 2, row
        # The manual's hook fails when the cache is down, and Nix then fails the build.
        expect_failed = 2 if (profile, variant) == ("down", "b-manual-hook") else 0
        assert row["failed"] == expect_failed, row
    assert cells[("normal", "b-manual-hook")]["uploaded"] == 2
    assert cells[("normal", "c-queue-up")]["uploaded"] == 2
    assert cells[("normal", "d-queue-down")]["spooled"] == 2

