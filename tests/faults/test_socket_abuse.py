"""Socket abuse that costs memory and log: hundreds of clients each sending 1 MiB without a
newline, and more idle clients than the connection limit. The daemon's memory stays within
its global budget for buffered requests, is given back when the clients go, and each
rejected client costs one plain log line, never a traceback.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from nix_push_queue.daemon.limits import BUFFER_BUDGET
from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.faults import raise_nofile

from . import daemon_strategies as DS
from .abuse import flood, rss_kib, settle
from .figures import FIGURES, Row
from .wire import connect, request

pytestmark = pytest.mark.integration

MIB = 1024


@pytest.fixture
def daemon(npq_daemon_factory: Any) -> DaemonHarness:
    d: DaemonHarness = npq_daemon_factory(hook=False, queue={"batch_wait": 5})
    d.start()
    return d


def test_flood_of_unfinished_lines_is_bounded_and_given_back(daemon: DaemonHarness) -> None:
    d = daemon
    assert d.proc is not None
    pid, sock = d.proc.pid, Path(d.socket_path)
    raise_nofile(1024)
    assert request(sock, {"v": 1, "op": "ping"})["ok"] is True
    before, _ = rss_kib(pid)
    started = time.monotonic()
    with flood(sock, clients=200, size=1 << 20) as result:
        time.sleep(1.0)
        held, peak = rss_kib(pid)
        assert request(sock, {"v": 1, "op": "ping"})["ok"] is True  # still serving
    settled = settle(pid, below_kib=before + 16 * MIB, timeout=20)
    log = d.log_text()
    rejected = log.count("closing a connection holding")
    print(f"measured: RSS before {before / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB, with the "
          f"200 clients open {held / MIB:.0f} MiB, settled {settled / MIB:.0f} MiB; "
          f"{result.sent / (1 << 20):.0f} MiB accepted, {rejected} client(s) rejected")
    FIGURES.record(Row("200 x 1 MiB unfinished lines", 200, 0, 0, 0, 0, 0,
                       time.monotonic() - started))
    budget_kib = BUFFER_BUDGET // 1024
    assert peak - before < budget_kib + 48 * MIB, (before, peak)
    assert settled < before + 16 * MIB, (before, settled)
    assert 0 < rejected <= 200
    assert "Traceback" not in log and "CancelledError" not in log
    assert d.running


def test_idle_clients_past_the_limit_cost_no_tracebacks(daemon: DaemonHarness) -> None:
    d = daemon
    sock = Path(d.socket_path)
    raise_nofile(2048)
    with contextlib.ExitStack() as stack:
        for i in range(500):
            s = stack.enter_context(connect(sock))
            if i % 2:
                s.sendall(b'{"v":1,"op":"st')
        assert request(sock, {"v": 1, "op": "ping"})["ok"] is True
    time.sleep(0.5)
    log = d.log_text()
    assert "Traceback" not in log and "CancelledError" not in log, log[-3000:]
    assert log.count("at the limit of") <= 2, log[-3000:]
    assert d.running


def test_fuzzed_socket_abuse(daemon: DaemonHarness) -> None:
    """Patterns drawn by the fuzzer: up to 300 clients (past the connection limit), each
    sending nothing or up to just over MAX_LINE of one byte pattern without a newline, held
    for a while. After each, the daemon answers, within its memory bound, without a
    traceback."""
    d = daemon
    assert d.proc is not None
    pid, sock = d.proc.pid, Path(d.socket_path)
    raise_nofile(2048)
    before, _ = rss_kib(pid)
    bound = before + BUFFER_BUDGET // 1024 + 64 * MIB
    peaks: list[int] = []

    @settings(max_examples=12, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(DS.socket_abuse())
    def one(abuse: DS.Abuse) -> None:
        with flood(sock, abuse.clients, abuse.size, fill=abuse.fill):
            time.sleep(abuse.hold)
            current, _ = rss_kib(pid)
            peaks.append(current)
            assert current < bound, (abuse, current, bound)
            assert request(sock, {"v": 1, "op": "ping"})["ok"] is True
        assert d.running, d.log_text()[-3000:]

    one()
    settled = settle(pid, below_kib=before + 16 * MIB, timeout=20)
    _, peak = rss_kib(pid)
    log = d.log_text()
    print(f"measured: fuzzed abuse, RSS before {before / MIB:.0f} MiB, peak {peak / MIB:.0f} "
          f"MiB, settled {settled / MIB:.0f} MiB")
    assert peak < bound
    assert settled < before + 16 * MIB, (before, settled)
    assert "Traceback" not in log and "CancelledError" not in log, log[-3000:]
