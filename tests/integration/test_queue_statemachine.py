"""Random interleavings against a model of what must be true (issue 22): hook, push, wait,
retry, drop, config changes, daemon restarts and kill -9, on a real daemon, a real Nix store
and a real file:// cache (hypothesis RuleBasedStateMachine).

Two targets: `local` (a file:// cache, always configured) and `flaky` (nothing listens
there; its rows go dead after two attempts), which a rule adds to and removes from the
config. The model knows which paths were handed over, which target configs were active, and
which narinfos the cache lost; after every `wait` it checks the exit code (0, 10 for dead
letters, 6 with the daemon down) and that every path handed over is in the cache.

Size per CI run (bounded: every example starts its own daemon): EXAMPLES examples of at
most STEPS steps over 11 rules, on a pool of POOL built paths.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.fixtures.daemon import NPQ, DaemonHarness
from tests.integration.test_queue_state import UNREACHABLE

pytestmark = pytest.mark.integration

EXAMPLES = 4
STEPS = 14
POOL = 4
FLAKY = {"name": "flaky", "url": UNREACHABLE}
WAIT = 120  # seconds; a wait that passes it is a failure (exit 9)


class QueueMachine(RuleBasedStateMachine):
    make: Callable[[], DaemonHarness]
    pool: list[Path]

    def __init__(self) -> None:
        super().__init__()
        self.d = self.make()
        self.running = False
        self.flaky = False  # in the config file
        self.active_flaky = False  # in the running daemon's config
        self.handed: set[Path] = set()  # every path hook/push handed over
        self.spooled: set[Path] = set()  # handed over while the daemon was down
        self.flaky_rows: set[Path] = set()  # open rows of `flaky`
        self.cache_lost: set[Path] = set()  # narinfos deleted since the path's last upload
        self.settled = False  # a wait returned and nothing was handed over since

    @initialize()
    def start(self) -> None:
        self._start()

    def teardown(self) -> None:
        self.d.kill()

    # -- helpers ---------------------------------------------------------------------------
    def _start(self) -> None:
        self.d.start()
        self.running, self.active_flaky = True, self.flaky
        if self.active_flaky:
            self.flaky_rows |= self.spooled
        self.spooled.clear()
        self.settled = False

    def _handed(self, path: Path) -> None:
        self.handed.add(path)
        self.settled = False
        if not self.running:
            self.spooled.add(path)
        elif self.active_flaky:
            self.flaky_rows.add(path)

    def _cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.d.cli(*args, check=False, timeout=WAIT + 60)

    # -- rules -----------------------------------------------------------------------------
    @rule(i=st.integers(0, POOL - 1))
    def hook(self, i: int) -> None:
        path = self.pool[i]
        q, env = self.d.config["queue"], self.d.env()
        env.update(OUT_PATHS=str(path), DRV_PATH="")
        run = subprocess.run([NPQ, "hook", "--socket", q["socket"], "--spool-dir",
                              q["spool_dir"], "--store-dir", self.d.config["nix"]["store_dir"],
                              "--state-dir", str(self.d.nix.state_dir), "--timeout", "10"],
                             env=env, capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stderr  # the hook never fails a build
        self._handed(path)

    @rule(i=st.integers(0, POOL - 1))
    def push(self, i: int) -> None:
        path = self.pool[i]
        run = self._cli("push", str(path))
        assert run.returncode == 0, run.stderr
        if self.running:
            self.cache_lost.discard(path)  # push looks in the cache: uploads it again
        self._handed(path)

    @rule()
    def wait(self) -> None:
        run = self._cli("wait", "--timeout", str(WAIT))
        if not self.running:
            assert run.returncode == 6, run.stderr
            return
        dead = self.active_flaky and bool(self.flaky_rows)
        assert run.returncode == (10 if dead else 0), (run.returncode, run.stderr)
        for path in self.handed - self.cache_lost:
            assert self.d.narinfo(path).exists(), f"{path} not in the cache after wait"
        self.settled = True

    @precondition(lambda self: self.running and self.settled)
    @rule()
    def retry(self) -> None:
        run = self._cli("retry")  # every dead letter
        assert run.returncode == 0, run.stderr
        self.settled = False  # the flaky rows are pending again, and go dead again

    # Only where the model knows the state of every flaky row (all dead): `drop --all` also
    # deletes an orphaned target's dead rows.
    @precondition(lambda self: self.running and self.settled
                  and (self.active_flaky or not self.flaky_rows))
    @rule()
    def drop(self) -> None:
        run = self._cli("drop", "--all")
        assert run.returncode == 0, run.stderr
        if self.active_flaky:
            self.flaky_rows.clear()  # settled: every flaky row was dead

    @precondition(lambda self: self.running)
    @rule()
    def drop_orphaned(self) -> None:
        run = self._cli("drop", "--orphaned")
        assert run.returncode == 0, run.stderr
        if not self.active_flaky:
            self.flaky_rows.clear()

    @rule()
    def toggle_flaky(self) -> None:
        """A config change; it takes effect when the daemon (re)starts."""
        self.flaky = not self.flaky
        self.d.config["targets"] = ([self.d.config["targets"][0], FLAKY] if self.flaky
                                    else self.d.config["targets"][:1])
        if self.running:
            self.restart()

    @precondition(lambda self: self.running)
    @rule()
    def restart(self) -> None:
        assert self.d.stop() == 0, self.d.log_text()[-2000:]
        self._start()

    @precondition(lambda self: self.running)
    @rule()
    def kill(self) -> None:
        self.d.kill()
        self.running = False

    @precondition(lambda self: not self.running)
    @rule()
    def start_again(self) -> None:
        self._start()

    @precondition(lambda self: self.settled and bool(self.handed - self.cache_lost))
    @rule(data=st.data())
    def cache_loses_a_path(self, data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(sorted(self.handed - self.cache_lost)))
        self.d.narinfo(path).unlink()
        self.cache_lost.add(path)

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def status_agrees(self) -> None:
        if not self.running:
            return
        run = self._cli("status", "--json")
        assert run.returncode == 0, run.stderr
        targets: dict[str, Any] = json.loads(run.stdout)["targets"]
        assert not targets["local"]["orphaned"]
        if "flaky" in targets:
            assert targets["flaky"]["orphaned"] == (not self.active_flaky)


def test_random_interleavings_keep_the_queue_true(npq_daemon_factory: Callable[..., Any]
                                                 ) -> None:
    first: DaemonHarness = npq_daemon_factory(hook=False)
    pool = first.build_many("machine", POOL, os.urandom(8).hex())

    def make() -> DaemonHarness:
        harness: DaemonHarness = npq_daemon_factory(hook=False, queue={
            "batch_wait": 0, "retry": {"initial_delay": 0.1, "max_delay": 0.5,
                                       "max_attempts": 2}})
        return harness

    QueueMachine.make = staticmethod(make)
    QueueMachine.pool = pool
    run_state_machine_as_test(QueueMachine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
        suppress_health_check=list(HealthCheck)))
