"""client/waitpaths.py against a scripted stand-in for the daemon's `progress` replies: when
the wait ends, which error names which paths, the spool holding missing paths, timeouts,
and requests split to fit a message."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from nix_push_queue.client.control import ControlClient
from nix_push_queue.client.waitpaths import moving, path_progress, wait_paths
from nix_push_queue.errors import DeadLetters, NotQueued, PathsLost, WaitTimeout
from nix_push_queue.wire.framing import MAX_PATHS
from nix_push_queue.wire.progress import (
    PathProblem,
    PathsProgress,
    ProgressReply,
    ProgressRequest,
)
from nix_push_queue.wire.protocol import Reply, Request


def sp(i: int) -> str:
    return f"/nix/store/{i:032d}-p"


class Scripted(ControlClient):
    """Answers `progress` with the next reply of a script (the last one again at the end)."""

    def __init__(self, replies: Sequence[ProgressReply]) -> None:
        super().__init__("/nonexistent")
        self.replies = list(replies)
        self.requests: list[ProgressRequest] = []

    def request(self, request: Request, timeout: float | None = None) -> Reply:
        assert isinstance(request, ProgressRequest)
        self.requests.append(request)
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


def reply(spool: int = 0, **counts: int) -> ProgressReply:
    problems = tuple(PathProblem(sp(90 + i), "dead", "HTTP 403")
                     for i in range(counts.get("dead", 0)))
    return ProgressReply({"c": PathsProgress(total=3, problems=problems, **counts)}, spool)


def test_returns_once_nothing_is_pending_or_uploading() -> None:
    client = Scripted([reply(pending=3), reply(pending=1, inflight=1, done=1),
                       reply(done=2, skipped=1)])
    got = wait_paths(client, [sp(1), sp(2), sp(3)], timeout=None, poll=0)
    assert got.targets["c"].settled == 3
    assert len(client.requests) == 3
    assert all(r.prioritize for r in client.requests)


def test_missing_paths_are_waited_for_while_the_spool_holds_files() -> None:
    assert moving(reply(spool=2, missing=1, done=2)) == 1
    assert moving(reply(spool=0, missing=1, done=2)) == 0
    client = Scripted([reply(spool=1, missing=1, done=2), reply(done=3)])
    wait_paths(client, [sp(1)], timeout=None, poll=0)
    assert len(client.requests) == 2


def test_dead_letters_are_named_after_the_rest_settled() -> None:
    client = Scripted([reply(pending=2, dead=1), reply(done=2, dead=1)])
    with pytest.raises(DeadLetters) as exc:
        wait_paths(client, [sp(1)], timeout=None, poll=0)
    assert len(client.requests) == 2
    assert f"  c: {sp(90)}: dead: HTTP 403" in str(exc.value)
    assert "1 path(s) did not reach every target (1 dead)" in str(exc.value)


@pytest.mark.parametrize(("state", "error"), [("gone", PathsLost), ("missing", NotQueued)])
def test_lost_and_unqueued_paths_have_their_own_errors(state: str,
                                                       error: type[Exception]) -> None:
    problem = PathProblem(sp(5), state, "why")  # type: ignore[arg-type]
    lone = ProgressReply({"c": PathsProgress(total=1, problems=(problem,), **{state: 1})})
    with pytest.raises(error, match=f"c: {sp(5)}: {state}: why"):
        wait_paths(Scripted([lone]), [sp(5)], timeout=None, poll=0)


def test_more_failures_than_named_are_counted() -> None:
    many = ProgressReply({"c": PathsProgress(total=500, dead=500, problems=tuple(
        PathProblem(sp(i), "dead", "x") for i in range(100)))})
    with pytest.raises(DeadLetters, match=r"\.\.\. and 400 more"):
        wait_paths(Scripted([many]), [sp(1)], timeout=None, poll=0)


def test_timeout_says_how_much_is_left() -> None:
    with pytest.raises(WaitTimeout, match=r"2 of 1 path\(s\) x 1 target\(s\) still pending"):
        wait_paths(Scripted([reply(pending=2, spool=0)]), [sp(1)], timeout=0, poll=0)


def test_many_paths_go_in_several_requests_and_merge() -> None:
    client = Scripted([ProgressReply({"c": PathsProgress(total=1, done=1)})])
    paths = [sp(i) for i in range(MAX_PATHS + 5)]
    got = path_progress(client, paths)
    assert [len(r.paths) for r in client.requests] == [MAX_PATHS, 5]
    assert got.targets["c"].done == 2
