"""GC roots at the edges (issue 20): something odd under a path's name, a directory that
vanished, temporary links a killed process left, what the hook says, and `push` with the
daemon down; on a real directory and database."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from nix_push_queue.client import hook
from nix_push_queue.client.control import ControlClient, Endpoint, push
from nix_push_queue.daemon.store import QueueStore
from nix_push_queue.wire import gcroots
from tests.fixtures.fake_daemon import FakeDaemon, Mode

from .test_gc_roots_unit import Sizer, keeper, names, sp


def test_something_not_a_link_under_the_name_is_refused_and_nothing_is_left(
        tmp_path: Path) -> None:
    odd = tmp_path / os.path.basename(sp(1))
    odd.mkdir()
    for _ in range(2):  # the hook, then the daemon
        with pytest.raises(OSError, match="exists and is not a symlink; move it away"):
            gcroots.add_root(str(tmp_path), sp(1))
    assert sorted(os.listdir(tmp_path)) == [odd.name]  # no .tmp-* link pins the path
    rooted, problem = gcroots.root_all(str(tmp_path), [sp(1), sp(2)])
    assert rooted == 1 and problem is not None and "not a symlink" in problem


def test_root_all_makes_the_directory_and_gcroots_above_it(tmp_path: Path) -> None:
    directory = gcroots.roots_dir(str(tmp_path / "state"))
    (tmp_path / "state").mkdir()  # a fresh Nix: no gcroots/ yet
    assert gcroots.root_all(directory, [sp(1), sp(2)]) == (2, None)
    assert set(gcroots.list_roots(directory)) == {os.path.basename(sp(i)) for i in (1, 2)}


def test_stale_temporary_links_are_removed_young_ones_kept(tmp_path: Path) -> None:
    for name, age in (("old", 1000.0), ("young", 0.0)):
        link = tmp_path / f"{gcroots.TEMP_PREFIX}1-{name}"
        link.symlink_to(sp(1))
        os.utime(link, (5000.0 - age, 5000.0 - age), follow_symlinks=False)
    assert gcroots.stale_temps(str(tmp_path), 4500.0) == 1
    assert os.listdir(tmp_path) == [f"{gcroots.TEMP_PREFIX}1-young"]


def test_keeper_makes_the_directory_and_missing_roots_again(tmp_path: Path) -> None:
    """Removed while the daemon runs: the pass makes the directory and the roots of queued
    paths still in the store again; intake's `root` makes the directory before each root."""
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    paths = [str(store_dir / os.path.basename(sp(i))) for i in range(3)]
    for p in paths[:2]:
        Path(p).write_text("x")  # paths[2] left the store: no root for it
    store = QueueStore(tmp_path / "q.sqlite")
    store.enqueue(paths, ["a"], 1.0)
    k, directory = keeper(tmp_path, store, Sizer({}))
    shutil.rmtree(directory)
    asyncio.run(k.tick())
    assert names(directory) == {os.path.basename(p) for p in paths[:2]}
    shutil.rmtree(directory)
    k.root(paths[:1])
    assert names(directory) == {os.path.basename(paths[0])}


def test_hook_says_queued_only_when_the_paths_are(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A roots problem is said once the paths' fate is known: 'they are queued' for spooled
    paths, nothing about queueing when the spool failed too (no contradiction)."""
    roots_dir = tmp_path / "roots"
    roots_dir.write_text("a file where the directory should be")

    def settings() -> hook.Settings:
        return hook.Settings(socket=str(tmp_path / "no.sock"), spool_dir=str(tmp_path / "spool"),
                             store_dir="/nix/store", timeout=2.0, nix_bin_dir=None,
                             roots_dir=str(roots_dir))

    assert hook.run(settings(), sp(1), "", {}) == "spooled"
    err = capsys.readouterr().err
    assert "cannot make 1 path(s) GC roots" in err and "they are queued" in err
    assert err.index("spooled 1 path(s)") < err.index("they are queued")
    shutil.rmtree(tmp_path / "spool")
    (tmp_path / "spool").write_text("not a directory")
    assert hook.run(settings(), sp(2), "", {}) == "lost"
    err = capsys.readouterr().err
    assert "NOT queued" in err and "they are queued" not in err


def test_push_with_the_daemon_down_roots_then_spools(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "state").mkdir()
    roots_dir = gcroots.roots_dir(str(tmp_path / "state"))
    ep = Endpoint(socket=str(tmp_path / "no.sock"), spool_dir=str(tmp_path / "spool"),
                  roots_dir=roots_dir)
    assert push(ControlClient(ep.socket, timeout=2.0), [sp(1), sp(2)], ep) == (0, 0, True)
    assert set(gcroots.list_roots(roots_dir)) == {os.path.basename(sp(i)) for i in (1, 2)}
    blocked = Endpoint(socket=ep.socket, spool_dir=ep.spool_dir,
                       roots_dir=str(tmp_path / "file" / "roots"))
    (tmp_path / "file").write_text("")
    with caplog.at_level(logging.WARNING):
        assert push(ControlClient(ep.socket, timeout=2.0), [sp(3)], blocked)[2]
    assert "cannot make 1 path(s) GC roots" in caplog.text
    assert "a garbage collection before the daemon starts may delete them" in caplog.text


def test_push_spools_when_the_daemon_refuses_for_its_own_reason(
        tmp_path: Path, fake_daemon: Callable[[Mode], FakeDaemon]) -> None:
    """A daemon whose disk is full answers `internal`: push roots and spools, as the hook."""
    daemon = fake_daemon("error")
    ep = Endpoint(socket=str(daemon.path), spool_dir=str(tmp_path / "spool"))
    assert push(ControlClient(ep.socket, timeout=2.0), [sp(1)], ep) == (0, 0, True)
    assert [f.read_text() for f in (tmp_path / "spool").glob("*.spool")] == [sp(1) + "\n"]
