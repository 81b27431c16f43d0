"""Derivation installables in the queue (issue 19): their spelling (nix/installable.py), each
Nix's spelling of them and of `nix build --json` (dialect.py, built.py, recorded from the real
binaries), the spool and the intake taking them, and the store holding a derivation's rows
until it is resolved (derivations.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nix_push_queue.daemon.derived import derived_roots
from nix_push_queue.daemon.intake import Intake
from nix_push_queue.daemon.store import QueueStore
from nix_push_queue.errors import ProtocolError
from nix_push_queue.nix import built, installable
from nix_push_queue.nix.dialect import Dialect, parse_version
from nix_push_queue.wire.spool_reader import parse_spool

STORE = "/nix/store"
H = "0123456789abcdfghijklmnpqrsvwxyz"
DATA = Path(__file__).resolve().parents[1] / "data" / "nix-dialects"
DRV = f"{STORE}/{H}-x.drv"


def sp(i: int, name: str = "p") -> str:
    return f"{STORE}/{i:032d}-{name}"


def dialect(version: str) -> Dialect:
    return Dialect(parse_version(f"nix (Nix) {version}"))


@pytest.mark.parametrize(("entry", "expected"), [
    (f"{DRV}^*", (DRV, "*")),
    (f"{DRV}^out,dev", (DRV, "out,dev")),
    (f"{DRV}!out", (DRV, "out")),
    (sp(1), None),
    (f"{sp(1)}^out", None),  # not a .drv
])
def test_split(entry: str, expected: tuple[str, str] | None) -> None:
    assert installable.split(entry) == expected


@pytest.mark.parametrize(("entry", "why"), [
    (f"{DRV}^*", None),
    (f"{DRV}^dev,out", None),
    (sp(1), None),
    (f"{DRV}^", "output name"),
    (f"{DRV}^out,,dev", "output name"),
    (f"{DRV}^out,out", "named twice"),
    (f"{DRV}^o/ut", "output name"),
    (f"/etc/{H}-x.drv^*", "derivation not inside the store"),
    ("/etc/passwd", "not inside the store"),
])
def test_problem(entry: str, why: str | None) -> None:
    problem = installable.problem(entry, STORE)
    assert (problem is None) if why is None else (why in (problem or ""))


def test_normalize_spells_the_queue_way() -> None:
    assert installable.normalize(f"{DRV}!out") == f"{DRV}^out"
    assert installable.normalize(f"{DRV}^out,dev") == f"{DRV}^dev,out"
    assert installable.normalize(sp(1)) == sp(1)


def test_each_nix_spells_outputs_its_way() -> None:
    assert dialect("2.8.0").installable(DRV, None) == DRV  # a bare DRV: all its outputs
    assert dialect("2.8.0").installable(DRV, ["out"]) == DRV  # no selector before 2.13
    assert dialect("2.26.3").installable(DRV, None) == f"{DRV}^*"
    assert dialect("2.34.8").installable(DRV, ["dev", "out"]) == f"{DRV}^dev,out"
    lix = Dialect(parse_version("nix (Lix, like Nix) 2.91.1"))
    assert lix.installable(DRV, ["out"]) == f"{DRV}^out"
    argv = dialect("2.26.3").outputs_json([f"{DRV}^*"])
    assert argv[-9:] == ["build", "--json", "--no-link", "--max-jobs", "0", "--option",
                         "substitute", "false", f"{DRV}^*"]


@pytest.mark.parametrize("version", ["2.8.0", "2.26.3", "2.34.8"])
def test_recorded_build_json_names_floating_ca_outputs(version: str) -> None:
    """Recorded by record_ca.py: `nix-store -q --outputs` fails on a floating CA .drv on
    every version, `nix build --json` names its outputs."""
    import json

    seen = json.loads((DATA / version / "ca" / "hook.json").read_text())
    assert seen["query_rc"] == 1 and "floating content-address" in seen["query_stderr"]
    assert (seen["out_paths"] == "") == (version == "2.8.0")
    outputs = built.parse_built((DATA / version / "ca" / "build-json.json").read_text())
    assert list(outputs) == [seen["drv_path"]]
    assert sorted(outputs[seen["drv_path"]]) == ["dev", "out"]
    if seen["out_paths"]:
        assert sorted(outputs[seen["drv_path"]].values()) == sorted(seen["out_paths"].split())
    unbuilt = (DATA / version / "ca" / "build-json-unbuilt.txt").read_text().lower()
    assert unbuilt.startswith("exit 1")
    assert "unable to start any build" in unbuilt or "local builds are disabled" in unbuilt


@pytest.mark.parametrize("text", ["", "{}", "[1]", '[{"drvPath": 1, "outputs": {}}]',
                                  '[{"drvPath": "x", "outputs": {"out": 2}}]'])
def test_build_json_we_cannot_read_is_an_error(text: str) -> None:
    with pytest.raises(built.BuiltError, match="nix build --json"):
        built.parse_built(text)


def test_spool_lines_may_be_derivations() -> None:
    data = f"{sp(1)}\n{DRV}^*\n{DRV}!out\n{DRV}^\n".encode()
    assert parse_spool(data, STORE) == ([sp(1), f"{DRV}^*", f"{DRV}^out"], [f"{DRV}^"])


def test_derived_roots_replace_outputs_by_their_derivation() -> None:
    other = f"{STORE}/{H[::-1]}-y.drv"
    derivations = {sp(1): [(DRV, "out")], sp(2): [(DRV, "dev")], sp(4): [(other, "out")]}
    roots = [sp(1), sp(3), sp(2), sp(4)]
    assert derived_roots(dialect("2.34.8"), roots, derivations) == [
        f"{DRV}^dev,out", sp(3), f"{other}^out"]
    assert derived_roots(dialect("2.8.0"), roots, derivations) == [DRV, sp(3), other]
    assert derived_roots(dialect("2.34.8"), [sp(3)], derivations) == [sp(3)]


# -- the store and the intake -------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    return QueueStore(tmp_path / "q.sqlite")


def intake(store: QueueStore, targets: tuple[str, ...] = ("a", "b")) -> Intake:
    return Intake(store, STORE, targets, ("*-excluded",), lambda: 10.0)


def test_a_derivation_waits_as_pending_on_every_target(store: QueueStore) -> None:
    reply = intake(store).enqueue([f"{DRV}!*"], "spool")
    assert (reply.queued, reply.skipped) == (2, 0)
    assert [d.installable for d in store.due_derivations(10.0, 10)] == [f"{DRV}^*"]
    stats = store.stats(10.0, ["a", "b"])
    assert stats["a"].pending == stats["b"].pending == 1
    assert intake(store).enqueue([f"{DRV}^*"], "spool").queued == 0  # already waiting


def test_outputs_with_their_derivation_wait_for_it(store: QueueStore) -> None:
    """A hook's OUT_PATHS and `DRV^*` together: the paths are queued at once (wait and
    roots see them) but not claimed before the derivation names them."""
    intake(store, ("a",)).enqueue([sp(1), sp(2), f"{DRV}^*"], "hook")
    assert store.claim("a", 10, 11.0) == []
    assert store.stats(11.0, ["a"])["a"].pending == 3
    intake(store, ("a",)).enqueue_resolved(f"{DRV}^*", DRV,
                                           {"out": sp(1), "dev": sp(2), "doc": sp(3)})
    jobs = store.claim("a", 10, 12.0)
    assert sorted((j.path, j.drv, j.output) for j in jobs) == [
        (sp(1), DRV, "out"), (sp(2), DRV, "dev"), (sp(3), DRV, "doc")]
    assert store.due_derivations(12.0, 10) == []


def test_resolved_outputs_pass_the_filters(store: QueueStore) -> None:
    intake(store, ("a",)).enqueue([f"{DRV}^*"], "push")
    intake(store, ("a",)).enqueue_resolved(f"{DRV}^*", DRV, {"out": sp(1),
                                                           "dev": sp(2, "x-excluded")})
    assert [p for p, *_ in store.jobs()] == [sp(1)]


def test_outputs_held_for_a_derivation_that_fails_go_without_it(store: QueueStore) -> None:
    intake(store, ("a",)).enqueue([sp(1), f"{DRV}^*"], "hook")
    assert store.resolution_failed(f"{DRV}^*", "the .drv is gone", 11.0, None, ["a"]) is False
    assert [j.path for j in store.claim("a", 10, 12.0)] == [sp(1)]
    assert store.stats(12.0, ["a"])["a"].gone == 0


def test_a_second_derivation_of_an_uploaded_path_sends_it_again(store: QueueStore) -> None:
    """Nix runs the hook for the derivation it resolved and for the one asked for: one
    output, two realisations. Learnt after the upload (done) or during it (inflight), the
    second makes the row go once more, as both derivations."""
    other = f"{STORE}/{H[::-1]}-x.drv"
    ours = intake(store, ("a",))
    ours.enqueue([f"{DRV}^*"], "hook")
    ours.enqueue_resolved(f"{DRV}^*", DRV, {"out": sp(1)})
    (job,) = store.claim("a", 10, 11.0)
    store.complete([job.id], 12.0)
    ours.enqueue([f"{other}^*"], "hook")
    ours.enqueue_resolved(f"{other}^*", other, {"out": sp(1)})
    (job,) = store.claim("a", 10, 13.0)  # done -> pending again
    assert store.derivations_of([sp(1)]) == {sp(1): [(DRV, "out"), (other, "out")]}
    third = f"{STORE}/{'1' * 32}-x.drv"
    ours.enqueue([f"{third}^*"], "hook")
    ours.enqueue_resolved(f"{third}^*", third, {"out": sp(1)})  # while inflight
    store.complete([job.id], 14.0)
    assert [j.path for j in store.claim("a", 10, 15.0)] == [sp(1)]
    ours.enqueue_resolved(f"{third}^*", third, {"out": sp(1)})  # nothing new: stays
    assert store.claim("a", 10, 16.0) == []


def test_each_derivation_paired_with_the_paths_is_released_not_lost(store: QueueStore) -> None:
    """Two hook runs of one CA build (the resolved derivation, then the one asked for), both
    with OUT_PATHS; both .drv files collected before the daemon resolves them."""
    other = f"{STORE}/{H[::-1]}-x.drv"
    intake(store, ("a",)).enqueue([sp(1), f"{DRV}^*"], "hook")
    intake(store, ("a",)).enqueue([sp(1), f"{other}^*"], "hook")
    assert not store.resolution_failed(f"{DRV}^*", "gone", 11.0, None, ["a"])
    assert not store.resolution_failed(f"{other}^*", "gone", 11.0, None, ["a"])
    assert store.stats(12.0, ["a"])["a"].gone == 0
    assert [j.path for j in store.claim("a", 10, 12.0)] == [sp(1)]
    assert store.derivations_of([sp(1)]) == {}


def test_plain_paths_are_not_held(store: QueueStore) -> None:
    intake(store, ("a",)).enqueue([sp(1)], "push")
    intake(store, ("a",)).enqueue([f"{DRV}^*", f"{DRV}^out"], "push")  # two: no pairing
    assert [j.path for j in store.claim("a", 10, 11.0)] == [sp(1)]


def test_a_failed_resolution_retries_then_is_lost_with_its_reason(store: QueueStore) -> None:
    intake(store).enqueue([f"{DRV}^*"], "hook")
    store.resolution_failed(f"{DRV}^*", "timed out", 11.0, 20.0, ["a", "b"])
    assert store.due_derivations(19.0, 10) == []
    assert store.due_derivations(20.0, 10)[0].attempts == 1
    assert store.resolution_failed(f"{DRV}^*", "the .drv is gone", 21.0, None, ["a", "b"])
    assert store.due_derivations(1e12, 10) == []
    stats = store.stats(22.0, ["a", "b"])
    assert (stats["a"].pending, stats["a"].gone, stats["b"].gone) == (0, 1, 1)
    assert stats["a"].last_error == "the .drv is gone"
    assert store.lost_reasons("a") == [(f"{DRV}^*", "a", "the .drv is gone")]
    assert store.drop_dead(None, None) == 2  # acknowledged
    assert store.stats(23.0, ["a"])["a"].gone == 0


def test_a_lost_derivation_queued_again_is_no_longer_lost(store: QueueStore) -> None:
    intake(store, ("a",)).enqueue([f"{DRV}^*"], "hook")
    store.resolution_failed(f"{DRV}^*", "gone", 11.0, None, ["a"])
    intake(store, ("a",)).enqueue([f"{DRV}^*"], "hook")
    assert store.stats(12.0, ["a"])["a"].gone == 0


def test_bad_entries_are_refused_whole(store: QueueStore) -> None:
    with pytest.raises(ProtocolError, match="output name"):
        intake(store).enqueue([sp(1), f"{DRV}^"], "push")
    with pytest.raises(ProtocolError, match=r"not a \.drv"):
        intake(store).enqueue([sp(1)], "hook", drv=sp(2))
    assert store.jobs() == [] and store.due_derivations(1e12, 10) == []
