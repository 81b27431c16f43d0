"""Hypothesis strategies for hostile input to the daemon's socket, and the oracle of what a
valid store path is (independent of storepath.py, so a bug there cannot hide itself).
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import strategies as st

NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-._?="
OPS = ("enqueue", "status", "retry", "drop", "ping")
SOURCES = ("hook", "push", "spool")


def store_path_re(store_dir: str) -> re.Pattern[str]:
    """A top-level store path as Nix defines it: 32 nix-base32 characters, '-', a name of
    at most 211 allowed characters that does not start with '.'."""
    return re.compile(
        re.escape(store_dir) + r"/[" + NIX32 + r"]{32}-(?!\.)[A-Za-z0-9+\-._?=]{1,211}"
    )


def is_store_path(store_dir: str, path: str) -> bool:
    return store_path_re(store_dir).fullmatch(path) is not None


def hashes() -> st.SearchStrategy[str]:
    return st.text(alphabet=NIX32, min_size=32, max_size=32)


def names() -> st.SearchStrategy[str]:
    return st.text(alphabet=NAME_CHARS, min_size=1, max_size=40).filter(
        lambda s: not s.startswith(".")
    )


def valid_paths(store_dir: str) -> st.SearchStrategy[str]:
    return st.builds(lambda h, n: f"{store_dir}/{h}-{n}", hashes(), names())


def shell_payloads(canary: str) -> st.SearchStrategy[str]:
    """Strings that would create `canary` if any layer passed them to a shell."""
    return st.sampled_from([
        f"$(touch {canary})", f"`touch {canary}`", f";touch {canary}", f"|touch {canary}",
        f"&& touch {canary}", f"\ntouch {canary}\n", f"'; touch {canary}; '",
        f'"; touch {canary}; "', f"$IFS;touch${{IFS}}{canary}",
    ])


def hostile_paths(store_dir: str, canary: str) -> st.SearchStrategy[str]:
    """Strings that are not store paths but look more or less like one."""
    h = hashes()
    return st.one_of(
        st.text(max_size=60),
        st.builds(lambda t: f"{store_dir}/{t}", st.text(max_size=60)),
        st.sampled_from([
            "/etc/passwd", "/", "", ".", "..", store_dir, store_dir + "/", "nix/store/x",
            f"{store_dir}/..", f"{store_dir}/../etc/passwd", "/etc/nix/../passwd",
            "/dev/zero", "/proc/self/environ", "-", "--help", "-rf",
        ]),
        st.builds(lambda x, n: f"{store_dir}/{x}-{n}",
                  st.text(alphabet="eoutEOUT" + NIX32, min_size=31, max_size=33), names()),
        st.builds(lambda x, n: f"{store_dir}/{x}-{n}", h, st.sampled_from([
            "..", ".hidden", "a/../../etc/passwd", "a\nb", "a\x00b", "a b", "a\tb", "é",
            "x" * 212, "a/b", "a\\b", "a*", "a'b", 'a"b', "\u202e", "a\ud800",
        ])),
        st.builds(lambda x, p: f"{store_dir}/{x}-a{p}", h, shell_payloads(canary)),
        st.builds(lambda p, s: f"{p}/../..{s}", valid_paths(store_dir), st.just("/etc/passwd")),
        st.builds(lambda p: "/" + p, valid_paths(store_dir)),   # //nix/store/...
        st.builds(lambda p: p + "\n" + p, valid_paths(store_dir)),
        st.builds(lambda p: " " + p, valid_paths(store_dir)),
    )


def json_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
    )


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        json_scalars(),
        lambda inner: st.one_of(st.lists(inner, max_size=4),
                                st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=12,
    )


def messages(store_dir: str, canary: str) -> st.SearchStrategy[dict[str, Any]]:
    """Requests of the right overall shape with wrong, missing or hostile fields."""
    paths = st.lists(st.one_of(hostile_paths(store_dir, canary), json_values()), max_size=6)
    return st.fixed_dictionaries(
        {},
        optional={
            "v": st.one_of(st.just(1), st.sampled_from([0, 2, -1, "1", 1.5, True, None])),
            "op": st.one_of(st.sampled_from(OPS), st.text(max_size=10), json_values()),
            "paths": st.one_of(paths, json_values()),
            "drv": st.one_of(hostile_paths(store_dir, canary), json_values()),
            "source": st.one_of(st.sampled_from(SOURCES), json_values()),
            "target": st.one_of(st.text(max_size=20), json_values()),
        },
    )


def encoded(message: dict[str, Any]) -> bytes:
    """JSON that keeps lone surrogates as escapes, as a hostile client may send them."""
    return json.dumps(message, ensure_ascii=True).encode("ascii") + b"\n"


def raw_lines() -> st.SearchStrategy[bytes]:
    """Arbitrary bytes (including invalid UTF-8), as one newline-terminated line or not."""
    return st.one_of(
        st.binary(max_size=512).map(lambda b: b.replace(b"\n", b"") + b"\n"),
        st.binary(max_size=512),  # truncated: no newline, then the client closes
        st.builds(lambda prefix, junk: prefix + junk + b"\n",
                  st.sampled_from([b'{"v":1,"op":"enqueue","paths":["', b'{"v":1,', b"{"]),
                  st.binary(max_size=64).map(lambda b: b.replace(b"\n", b""))),
    )
