from __future__ import annotations
import time, signal
from pathlib import Path
from typing import Any
from tests.fixtures.daemon import DaemonHarness
from .wire import request


def test_dbg(npq_daemon_factory: Any, tmp_path: Path) -> None:
    d: DaemonHarness = npq_daemon_factory(hook=False)
    d.extra_env["PYTHONFAULTHANDLER"] = "1"
    d.start()
    out = []
    start = time.monotonic()
    for i in range(500):
        t = time.monotonic()
        try:
            request(Path(d.socket_path), {"v": 1, "op": "status"}, timeout=5)
        except Exception as e:
            out.append(f"{i} at {t-start:.1f}s: {type(e).__name__} {e} after {time.monotonic()-t:.1f}")
            assert d.proc
            d.proc.send_signal(signal.SIGABRT); time.sleep(1)
            out.append(d.log_text()[-8000:])
            break
        time.sleep(0.5)
    Path("/tmp/g_stat5.txt").write_text("\n".join(out) or "all ok")
