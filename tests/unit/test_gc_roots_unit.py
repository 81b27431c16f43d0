"""GC roots, module by module: the shared directory (wire/gcroots.py), the store's ledger of
rooted and lost paths, the daemon's keeper (cap, release, sweep) with a fake sizer on a real
directory and database, and `wait` failing on lost paths."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from nix_push_queue.client.control import lost_paths
from nix_push_queue.daemon.ledger import RootedPath
from nix_push_queue.daemon.roots import RootKeeper, RootPolicy, over_cap
from nix_push_queue.daemon.store import QueueStore
from nix_push_queue.errors import PathsLost
from nix_push_queue.wire import gcroots
from nix_push_queue.wire.protocol import TargetStats

STORE = "/nix/store"


def sp(i: int) -> str:
    return f"{STORE}/{i:032d}-p{i}"


# -- wire/gcroots.py ---------------------------------------------------------------------


def test_add_root_is_idempotent_and_refreshes_the_time(tmp_path: Path) -> None:
    assert gcroots.add_root(str(tmp_path), sp(1))
    link = tmp_path / os.path.basename(sp(1))
    os.utime(link, (0, 0), follow_symlinks=False)
    assert not gcroots.add_root(str(tmp_path), sp(1))
    assert os.readlink(link) == sp(1)
    assert link.lstat().st_mtime > time.time() - 60  # young again: the sweep keeps it


def test_a_link_of_the_same_name_elsewhere_is_replaced(tmp_path: Path) -> None:
    other = "/gnu/store/" + os.path.basename(sp(1))
    os.symlink(other, tmp_path / os.path.basename(sp(1)))
    assert gcroots.add_root(str(tmp_path), sp(1))
    assert gcroots.list_roots(str(tmp_path))[os.path.basename(sp(1))][0] == sp(1)
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(sp(1))]  # no temp link left


def test_missing_directory_and_remove_all(tmp_path: Path) -> None:
    directory = str(tmp_path / "roots")
    assert gcroots.list_roots(directory) == {}
    with pytest.raises(FileNotFoundError):
        gcroots.add_root(directory, sp(1))
    gcroots.ensure_dir(directory)
    for i in range(3):
        gcroots.add_root(directory, sp(i))
    assert gcroots.remove_all(directory) == 3
    assert not os.path.exists(directory)


# -- the ledger (store) ------------------------------------------------------------------


def test_forgotten_rows_are_lost_until_dropped_or_queued_again(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "q.sqlite")
    store.enqueue([sp(1), sp(2)], ["a", "b"], 1.0)
    ids = [j.id for j in store.claim("a", 10, 2.0)]
    store.release_roots([sp(1)], 3.0)
    store.forget(ids, "garbage-collected", 4.0)
    assert store.lost() == [(sp(1), "a", True), (sp(2), "a", False)]
    stats = store.stats(5.0)
    assert (stats["a"].gone, stats["a"].released) == (2, 1)
    assert (stats["b"].gone, stats["b"].released) == (0, 1)  # sp(1) is queued for b
    store.enqueue([sp(2)], ["a"], 6.0)  # rebuilt: no longer lost
    assert store.lost("a") == [(sp(1), "a", True)]
    assert store.drop_dead("a", None) == 1
    assert store.lost() == []


def test_rooted_paths_oldest_first_with_sizes(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "q.sqlite")
    store.enqueue([sp(2)], ["a"], 2.0)
    store.enqueue([sp(1)], ["a", "b"], 1.0)
    store.set_sizes({sp(1): 100})
    assert store.rooted_paths() == [RootedPath(sp(1), 1.0, 100), RootedPath(sp(2), 2.0, None)]
    store.complete([j.id for j in store.claim("a", 10, 3.0)], 3.0)
    assert store.uploaded([sp(1), sp(2), sp(3)]) == {sp(2)}  # sp(1): b has not got it
    assert [r.path for r in store.rooted_paths()] == [sp(1)]


# -- the cap --------------------------------------------------------------------------------


def roots(*sizes: int | None) -> list[RootedPath]:
    return [RootedPath(sp(i), float(i), size) for i, size in enumerate(sizes)]


def test_over_cap_releases_the_oldest_until_the_rest_fit() -> None:
    assert over_cap(roots(10, 10, 10), 10.0, 30, None) == []
    assert [(r.path, why) for r, why in over_cap(roots(10, 10, 10), 10.0, 15, None)] == [
        (sp(0), "bytes"), (sp(1), "bytes")]
    assert [(r.path, why) for r, why in over_cap(roots(1, 1, 1), 10.5, None, 9.0)] == [
        (sp(0), "age"), (sp(1), "age")]
    assert over_cap(roots(None, None), 0.0, 0, None) == []  # unmeasured counts 0
    assert [r.path for r, _ in over_cap(roots(50), 0.0, 10, None)] == [sp(0)]


# -- the keeper -------------------------------------------------------------------------------


class Sizer:
    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.asked: list[list[str]] = []

    async def __call__(self, paths: Sequence[str]) -> dict[str, int]:
        self.asked.append(list(paths))
        return {p: self.sizes.get(p, 0) for p in paths}


async def direct(fn, *args, **kw):  # type: ignore[no-untyped-def]
    return fn(*args, **kw)


def keeper(tmp_path: Path, store: QueueStore, sizer: Sizer, *, max_bytes: int | None = None,
           now: float = 1000.0) -> tuple[RootKeeper, Path]:
    directory = tmp_path / "gcroots"
    directory.mkdir(exist_ok=True)
    (tmp_path / "spool").mkdir(exist_ok=True)
    policy = RootPolicy(directory=str(directory), store_dir=STORE, max_bytes=max_bytes,
                        max_age=None, grace=60.0, spool_dir=str(tmp_path / "spool"))
    return RootKeeper(store, policy, sizer=sizer, now=lambda: now, offload=direct), directory


def names(directory: Path) -> set[str]:
    return set(os.listdir(directory))


def test_keeper_measures_caps_and_releases(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "q.sqlite")
    sizer = Sizer({sp(i): 10 for i in range(4)})
    k, directory = keeper(tmp_path, store, sizer, max_bytes=25)
    for i in range(4):
        store.enqueue([sp(i)], ["a"], float(i))
        gcroots.add_root(str(directory), sp(i))
    asyncio.run(k.tick())
    assert sizer.asked == [[sp(0), sp(1), sp(2), sp(3)]]
    assert names(directory) == {os.path.basename(sp(i)) for i in (2, 3)}
    assert store.stats(0.0)["a"].released == 2
    asyncio.run(k.tick())  # measured once; nothing more to release
    assert len(sizer.asked) == 1 and store.stats(0.0)["a"].released == 2


def test_keeper_releases_uploaded_at_once_and_unknown_after_grace(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "q.sqlite")
    k, directory = keeper(tmp_path, store, Sizer({}))
    store.enqueue([sp(1)], ["a"], 0.0)
    store.complete([j.id for j in store.claim("a", 10, 1.0)], 1.0)
    for i in (1, 2, 3):
        gcroots.add_root(str(directory), sp(i))
    os.utime(directory / os.path.basename(sp(3)), (900.0, 900.0), follow_symlinks=False)
    spooled = tmp_path / "spool" / "x.spool"
    spooled.write_text(sp(3) + "\n")
    asyncio.run(k.tick())
    # sp(1) uploaded: gone; sp(2) unknown but young; sp(3) old but the spool is not empty
    assert names(directory) == {os.path.basename(sp(i)) for i in (2, 3)}
    spooled.unlink()
    asyncio.run(k.tick())
    assert names(directory) == {os.path.basename(sp(2))}


def test_settled_keeps_the_root_while_a_target_still_needs_it(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "q.sqlite")
    k, directory = keeper(tmp_path, store, Sizer({}))
    store.enqueue([sp(1)], ["a", "b"], 0.0)
    gcroots.add_root(str(directory), sp(1))
    store.complete([j.id for j in store.claim("a", 10, 1.0)], 1.0)
    assert k.settled([sp(1)]) == 0 and names(directory)
    store.complete([j.id for j in store.claim("b", 10, 1.0)], 1.0)
    assert k.settled([sp(1)]) == 1 and not names(directory)


# -- wait ------------------------------------------------------------------------------------


def test_wait_fails_on_lost_paths() -> None:
    lost_paths({"a": TargetStats(done=3)})
    with pytest.raises(PathsLost, match=r"a: 2 gone \(1 after the GC roots cap") as err:
        lost_paths({"a": TargetStats(done=3, gone=2, released=1)})
    assert err.value.exit_code == 13
