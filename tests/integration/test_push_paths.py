"""`push` queues only valid store paths, read the way the user wrote them: never a path cut
down to its first component, never a well-formed path the store does not hold."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from tests.fixtures.daemon import DaemonHarness

Factory = Callable[..., DaemonHarness]

pytestmark = pytest.mark.integration


def test_push_reads_paths_as_written_and_checks_the_store(npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(hook=False, queue={"batch_wait": 5})
    path = d.build("pushed", uuid.uuid4().hex)
    store = str(path.parent)
    d.start()

    escape = d.cli("push", f"{path}/../../../etc", check=False)
    assert escape.returncode == 5 and "'..'" in escape.stderr, escape.stderr
    missing = f"{store}/{'0' * 32}-never-built"
    absent = d.cli("push", missing, check=False)
    assert absent.returncode == 5, absent.stderr
    assert f"{missing}: not a valid path in the store" in absent.stderr
    assert d.rows() == {}

    d.cli("push", "/" + str(path) + "/./")  # //nix/store/...-pushed/.
    assert set(d.rows()) == {str(path)}


def test_ten_thousand_absent_paths_are_refused_at_once(npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(hook=False, queue={"batch_wait": 5})
    real = d.build("real", uuid.uuid4().hex)
    d.start()
    absent = [f"{real.parent}/{uuid.uuid4().hex.replace('e', 'z')}"
              f"-absent-{i}" for i in range(10_000)]
    started = time.monotonic()
    proc = d.cli("push", str(real), *absent, check=False)
    took = time.monotonic() - started
    assert proc.returncode == 5
    assert "(and 9999 more): not a valid path in the store" in proc.stderr
    assert d.rows() == {}
    print(f"measured: 10,000 absent paths refused by push in {took:.2f} s")
