"""Hypothesis strategies for the daemon's own inputs besides request lines: entries that land
in its spool directory, and socket traffic patterns that cost it memory or connections.

Spool entries are described as data (kind, name, content) and made real by `make_entry`, so
a failing example prints what was on disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hypothesis import strategies as st

from .strategies import hostile_paths

EntryKind = Literal["file", "dir", "symlink", "fifo", "empty", "unreadable", "sparse_big",
                    "torn", "binary"]
BAD_KINDS: tuple[EntryKind, ...] = ("dir", "symlink", "fifo", "unreadable", "sparse_big",
                                    "binary")


@dataclass(frozen=True)
class SpoolEntry:
    """One entry named `<name>.spool`: `lines` are written for file-like kinds."""

    kind: EntryKind
    name: str
    lines: tuple[str, ...] = ()

    def queued_lines(self, is_valid: Callable[[str], bool]) -> set[str]:
        """The lines the daemon must queue from this entry."""
        if self.kind == "file":
            return set(self.lines)
        if self.kind == "torn":  # the last line has no newline: torn, not queued
            return {line for line in self.lines[:-1] if is_valid(line)}
        return set()


def _names() -> st.SearchStrategy[str]:
    return st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1,
                   max_size=24)


def spool_entries(paths: st.SearchStrategy[str], store_dir: str, canary: str
                  ) -> st.SearchStrategy[SpoolEntry]:
    """Good spool files (lines drawn from `paths`, sometimes mixed with hostile lines) and
    every kind of entry that cannot be read as one."""
    good = st.lists(paths, min_size=1, max_size=5).map(tuple)
    mixed = st.lists(st.one_of(paths, hostile_paths(store_dir, canary)),
                     min_size=1, max_size=5).map(
        lambda ls: tuple(x for x in ls if "\n" not in x and "\0" not in x and x))
    return st.one_of(
        st.builds(SpoolEntry, st.just("file"), _names(), good),
        st.builds(SpoolEntry, st.just("torn"), _names(), mixed),
        st.builds(SpoolEntry, st.sampled_from(BAD_KINDS), _names()),
        st.builds(SpoolEntry, st.just("empty"), _names()),
    )


def to_bytes(text: str) -> bytes:
    """A spool file's bytes for `text`: U+DC80..U+DCFF stand for raw bytes (surrogateescape,
    as os.fsdecode makes them); any other lone surrogate, which surrogateescape cannot encode,
    becomes its 3-byte ill-formed UTF-8, as a careless writer (CESU-8, Java) leaves it."""
    out = bytearray()
    for char in text:
        code = ord(char)
        lone = 0xD800 <= code <= 0xDFFF and not 0xDC80 <= code <= 0xDCFF
        out += char.encode("utf-8", "surrogatepass" if lone else "surrogateescape")
    return bytes(out)


def make_entry(directory: Path, entry: SpoolEntry, serial: int) -> Path:
    """Create `entry` in `directory` under a unique name; returns its path. It is made under
    a name the daemon does not read, then renamed into place, as the hook does: the running
    daemon must never see a half-made entry (an empty file, say, where the file's lines are
    still to come, which it rightly deletes)."""
    path = directory / f"{serial}-{entry.name}.spool"
    part = directory / f".{serial}-{entry.name}.part"
    _make(part, entry)
    part.rename(path)
    return path


def _make(path: Path, entry: SpoolEntry) -> None:
    match entry.kind:
        case "file":
            path.write_bytes(to_bytes("".join(f"{line}\n" for line in entry.lines)))
        case "torn":  # good lines, hostile ones, and a last line without its newline
            text = "\n".join(entry.lines)
            path.write_bytes(to_bytes(text))
        case "dir":
            path.mkdir()
            (path / "inside.spool").write_text("/not/ingested\n")
        case "symlink":
            path.symlink_to("/etc/shadow")
        case "fifo":
            os.mkfifo(path)
        case "empty":
            path.write_bytes(b"")
        case "unreadable":
            path.write_text("x\n")
            path.chmod(0)
        case "sparse_big":
            with path.open("wb") as f:
                f.truncate((64 << 20) + 1)
        case "binary":
            path.write_bytes(bytes(range(256)) * 4)


@dataclass(frozen=True)
class Abuse:
    """A socket client pattern: `clients` connections each send `size` bytes of `fill`
    without a newline (or say nothing when size is 0), held open for `hold` seconds."""

    clients: int
    size: int
    fill: bytes
    hold: float


def socket_abuse() -> st.SearchStrategy[Abuse]:
    return st.builds(
        Abuse,
        clients=st.integers(1, 300),
        size=st.sampled_from([0, 1, 4096, 1 << 16, (1 << 20) - 1, 1 << 20, (1 << 20) + 1]),
        fill=st.sampled_from([b"a", b'{"v":1,"op":"enqueue","paths":["', b"\xff", b" "]),
        hold=st.sampled_from([0.0, 0.2, 1.0]),
    )
