"""daemon/s3/staging.py: closure order, chunks under the cap, narinfo layers, the area."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nix_push_queue.daemon.s3.staging import (
    NarInfo,
    StagingArea,
    chunks,
    closure_order,
    layers,
    parse_narinfo,
)
from nix_push_queue.nix.pathinfo import PathInfo


def p(c: str, name: str = "x") -> str:
    return f"/nix/store/{c * 32}-{name}"


def info(c: str, refs: str = "", size: int = 10) -> PathInfo:
    return PathInfo(p(c), tuple(p(r) for r in refs), (), size)


def test_closure_order_puts_references_first_and_survives_cycles() -> None:
    infos = [info("a", "bc"), info("b", "c"), info("c", "c"), info("d", "ad")]
    order = [i.path for i in closure_order(infos)]
    assert sorted(order) == sorted(i.path for i in infos)
    for item in infos:
        for ref in item.references:
            if ref != item.path:
                assert order.index(ref) < order.index(item.path)


def test_chunks_fit_the_budget_and_a_big_path_goes_alone() -> None:
    ordered = [info("a", size=4), info("b", size=4), info("c", size=50), info("d", size=3)]
    assert [[i.path[11] for i in c] for c in chunks(ordered, 10)] == [["a", "b"], ["c"], ["d"]]
    assert len(chunks(ordered, 1000)) == 1


def test_parse_narinfo_and_layers() -> None:
    text = (f"StorePath: {p('a')}\nURL: nar/abc.nar.xz\nCompression: xz\n"
            f"References: {p('b')[11:]} {p('a')[11:]}\nSig: k:x\n")
    parsed = parse_narinfo(text)
    assert parsed == NarInfo(p("a"), "nar/abc.nar.xz", (p("b")[11:], p("a")[11:]))
    with pytest.raises(ValueError, match="not a narinfo"):
        parse_narinfo("hello: world\n")
    infos = {"a" * 32: parsed, "b" * 32: NarInfo(p("b"), "nar/b", ()),
             "c" * 32: NarInfo(p("c"), "nar/c", (p("a")[11:],))}
    assert layers(infos) == [["b" * 32], ["a" * 32], ["c" * 32]]


def test_area_clears_leftovers_and_bounds_reservations(tmp_path: Path) -> None:
    area = StagingArea(tmp_path / "staging", 100)
    left = tmp_path / "staging" / "t" / "old" / "nar"
    left.mkdir(parents=True)
    (left / "x.nar").write_bytes(b"x" * 5000)
    assert area.held("t") >= 5000
    assert area.clear() >= 5000 and area.held() == 0

    async def scenario() -> list[str]:
        events: list[str] = []

        async def chunk(name: str, size: int, hold: float) -> None:
            async with area.reserve(size):
                events.append(f"+{name}")
                await asyncio.sleep(hold)
                events.append(f"-{name}")

        async with area.batch("t") as directory:
            assert directory.is_dir()
            await asyncio.gather(chunk("a", 60, 0.05), chunk("b", 60, 0.0),
                                 chunk("huge", 500, 0.0))
        assert not directory.exists()
        return events

    events = asyncio.run(scenario())
    # b waits for a (60 + 60 > 100); the path bigger than the cap runs alone.
    assert events[:2] == ["+a", "-a"]
    for i in range(0, len(events), 2):
        assert events[i][1:] == events[i + 1][1:]
