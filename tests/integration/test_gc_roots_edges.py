"""Every way into the queue roots the path, whether or not the daemon runs, and a roots
directory removed while the daemon runs comes back (issue 20); with the real collector.

`push` is run without the hook (the paths are built with the hook off), so only `push`
or the daemon can have rooted them."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.wire import gcroots
from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.gc import DownCache, collect, eventually, root_names, status_totals

pytestmark = pytest.mark.integration

OUTAGE = {"retry": {"max_attempts": 1000}}


def built(d: DaemonHarness, prefix: str, n: int) -> list[Path]:
    """Built with the hook off (`hook=False` harness): nothing roots them but the queue."""
    return [d.build(f"{prefix}-{i}", f"{prefix} {i} {uuid.uuid4().hex}") for i in range(n)]


def assert_in_cache(d: DaemonHarness, paths: list[Path]) -> None:
    for path in paths:
        assert d.narinfo(path).is_file(), path
        d.assert_signed(path)


def test_push_with_the_daemon_down_roots_the_paths(npq_daemon_factory: Any) -> None:
    d: DaemonHarness = npq_daemon_factory(hook=False)
    paths = built(d, "pushdown", 3)
    assert not root_names(d.nix)
    pushed = d.cli("push", *map(str, paths))
    assert "spooled 3 path(s)" in pushed.stdout, pushed.stdout
    assert root_names(d.nix) == {p.name for p in paths}
    out = collect(d.nix)
    assert all(p.exists() for p in paths), out
    d.start()
    waited = d.cli("wait", "--timeout", "120", check=False)
    assert waited.returncode == 0, waited.stderr + d.log_text()[-3000:]
    assert_in_cache(d, paths)
    assert not root_names(d.nix)
    d.assert_substitutable(*paths)


def test_push_to_a_running_daemon_roots_before_it_returns(
        npq_daemon_factory: Any, down_cache: DownCache) -> None:
    d: DaemonHarness = npq_daemon_factory(hook=False, cache=down_cache.spec, queue=OUTAGE)
    d.start()
    paths = built(d, "pushup", 2)
    d.cli("push", *map(str, paths))
    assert root_names(d.nix) == {p.name for p in paths}  # no wait: made before the reply
    collect(d.nix)
    assert all(p.exists() for p in paths)
    down_cache.up()
    d.wait_drained(timeout=120)
    assert_in_cache(d, paths)
    assert not root_names(d.nix)


def test_roots_directory_removed_while_the_daemon_runs(
        npq_daemon_factory: Any, down_cache: DownCache) -> None:
    """Removed mid-run: the periodic pass makes the directory and the queued paths' roots
    again; removed again, a `push` roots its path before it returns; a collection then
    deletes none, and everything drains once the cache is back."""
    d: DaemonHarness = npq_daemon_factory(hook=False, cache=down_cache.spec, queue=OUTAGE)
    directory = Path(gcroots.roots_dir(str(d.nix.state_dir)))
    d.start()
    first = built(d, "removed", 3)
    d.cli("push", *map(str, first))
    eventually(lambda: "failed" in d.log_text(), what="uploads failing")
    shutil.rmtree(directory)
    eventually(lambda: root_names(d.nix) == {p.name for p in first}, timeout=30,
               what="the pass making the directory and the roots again")
    assert "made 3 missing GC root(s) of queued paths again" in d.log_text()
    shutil.rmtree(directory.parent)  # gcroots/ itself, as on a fresh Nix
    later = built(d, "later", 1)
    d.cli("push", str(later[0]))
    assert later[0].name in root_names(d.nix)
    paths = first + later
    eventually(lambda: root_names(d.nix) == {p.name for p in paths}, timeout=30,
               what="the pass making the first paths' roots again")
    collect(d.nix)
    assert all(p.exists() for p in paths)
    down_cache.up()
    d.wait_drained(timeout=120)
    totals = status_totals(d)
    assert (totals["done"], totals["gone"]) == (len(paths), 0), totals
    assert_in_cache(d, paths)
    assert not root_names(d.nix) and directory.is_dir()
    assert "(retrying)" not in d.log_text()
