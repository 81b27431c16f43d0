"""bench/s3drain.py runs end to end on a tiny set (the figures in bench/results/s3drain come
from the same code on 1,000 paths): every row measured, every path landed, a report."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import s3drain
from nix_push_queue.nix import stores
from nix_push_queue.nix.isolated import IsolatedNix

pytestmark = pytest.mark.integration


def test_s3drain_quick(nix: IsolatedNix, tmp_path: Path) -> None:
    result = s3drain.run(tmp_path / "work", 12, 64 * 1024, lambda _: None)
    assert result["boto3"]["totals"]["done"] == 12
    assert result["boto3"]["bucket_bytes"][1] == 2 * 12 + 1  # NARs, narinfos, nix-cache-info
    assert result["boto3"]["npq_s3_sent_bytes_total"] == result["boto3"]["bucket_bytes"][0]
    assert result["ceiling"]["requests"] == 2 * 12
    two = result["two"]
    assert two["objects"] == 2 * 12 + 1 and two["sent_vs_unique"] >= 1.0
    support = stores.s3_support(None, nix.env())
    assert isinstance(result["nix"], dict) == support.supported
    report = s3drain.render([result])
    assert report.count("\n") == 3 and result["machine"]["nix"] in report
