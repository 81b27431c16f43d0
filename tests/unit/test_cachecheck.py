"""cachecheck: does a target still have a path? A real directory and `push`'s recheck in the
intake over a real QueueStore (issue 22). The HTTP and `nix path-info` lookups, which need a
server on the loopback or Nix: tests/integration/test_cachecheck_live.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from nix_push_queue.daemon.cachecheck import CacheCheck, file_has
from nix_push_queue.daemon.intake import Intake
from nix_push_queue.daemon.store import QueueStore
from tests.unit.test_worker import target

STORE = "/nix/store"
HAVE = f"{STORE}/{'a' * 32}-have"
LOST = f"{STORE}/{'b' * 32}-lost"


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / f"{'a' * 32}.narinfo").write_text("StorePath: x\n")
    return tmp_path / "cache"


def test_file_lookups(cache: Path) -> None:
    local = replace(target("f"), url=f"file://{cache}")
    assert file_has(local, HAVE) and not file_has(local, LOST)


@pytest.mark.parametrize("source", ["push", "hook", "spool"])
def test_done_rows_the_cache_lacks_are_queued_again(tmp_path: Path, source: str) -> None:
    """A push, or a hook's entry after a rebuild: the cache is asked about done rows only,
    once per path; `force` (push --force) does not ask."""
    asked: list[tuple[str, tuple[str, ...]]] = []

    def lacking(name: str, paths: Sequence[str]) -> list[str]:
        asked.append((name, tuple(paths)))
        return [p for p in paths if p == LOST]

    with QueueStore(tmp_path / "q.sqlite") as store:
        intake = Intake(store, STORE, ("a",), (), lambda: 10.0, lacking=lacking)
        store.enqueue([HAVE, LOST], ["a"], 1.0)
        assert intake.enqueue([HAVE, LOST], source).queued == 0
        assert asked == []  # pending rows: nothing to ask
        for job in store.claim("a", 10, 2.0):
            store.complete([job.id], 3.0)
        reply = intake.enqueue([HAVE, LOST], source)
        assert reply.queued == 1 and asked == [("a", (HAVE, LOST))]
        assert {p: s for p, _, s, _ in store.jobs()} == {HAVE: "done", LOST: "pending"}
        forced = intake.enqueue([HAVE, LOST], "push", force=True)
        assert forced.queued == 1  # HAVE; LOST is pending already
        assert {s for _, _, s, _ in store.jobs()} == {"pending"}
        assert len(asked) == 1  # --force does not look


def test_cache_check_picks_the_lookup_by_scheme(cache: Path) -> None:
    other: list[str] = []

    def nix_lookup(t: object, path: str) -> bool:
        other.append(path)
        return True

    targets = {"f": replace(target("f"), url=f"file://{cache}"),
               "s": replace(target("s"), url="ssh-ng://builder")}
    check = CacheCheck(targets, nix_lookup)
    assert check.lacking("f", [HAVE, LOST]) == [LOST]
    assert check.lacking("s", [HAVE, LOST]) == [] and other == [HAVE, LOST]
    assert check.lacking("gone", [HAVE]) == []
