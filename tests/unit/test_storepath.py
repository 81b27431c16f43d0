from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nix_push_queue.nix.storepath import (
    MAX_NAME_LEN,
    NAME_CHARS,
    NIX_BASE32,
    hash_part,
    is_derivation,
    is_store_path,
    narinfo_name,
    problem,
)

STORE = "/nix/store"
H = "0123456789abcdfghijklmnpqrsvwxyz"  # 32 characters, the whole alphabet


@pytest.mark.parametrize(
    "path",
    [
        f"{STORE}/{H}-hello-2.12",
        f"{STORE}/{H}-a",
        f"{STORE}/{H}-+-._?=Az09",
        f"{STORE}/{H}-" + "n" * MAX_NAME_LEN,
        f"{STORE}/{H}-x.drv",
        f"{STORE}/{H}--",
    ],
)
def test_valid(path: str) -> None:
    assert problem(path, STORE) is None
    assert is_store_path(path, STORE + "/")


@pytest.mark.parametrize(
    ("path", "why"),
    [
        (f"/nix/stor/{H}-x", "not inside"),
        (f"/nix/store2/{H}-x", "not inside"),
        (f"{STORE}/{H}-x/bin/sh", "directly below"),
        (f"{STORE}/{H}-x/", "directly below"),
        (f"{STORE}/../{H}-x", "directly below"),
        (f"{STORE}/..", "hash"),
        (f"{STORE}/", "hash"),
        (f"{STORE}/{H}-", "hash"),
        (f"{STORE}/{H}", "hash"),
        (f"{STORE}/{H}x-y", "hash"),
        (f"{STORE}/{H[:31]}-y", "hash"),
        (f"{STORE}/{H[:31]}e-y", "nix-base32"),  # e, o, u, t are not in the alphabet
        (f"{STORE}/{H[:31]}A-y", "nix-base32"),
        (f"{STORE}/{H}-.hidden", "starts with '.'"),
        (f"{STORE}/{H}-" + "n" * (MAX_NAME_LEN + 1), "longer"),
        (f"{STORE}/{H}-a b", "characters"),
        (f"{STORE}/{H}-a\nb", "characters"),
        (f"{STORE}/{H}-a\0b", "characters"),
        (f"{STORE}/{H}-a;rm", "characters"),
        (f"{STORE}/{H}-$(x)", "characters"),
        (f"{STORE}/{H}-é", "characters"),
        (f"{STORE}{STORE}/{H}-x", "directly below"),
        (f"relative/{H}-x", "not inside"),
        ("", "not inside"),
    ],
)
def test_invalid(path: str, why: str) -> None:
    reason = problem(path, STORE)
    assert reason is not None and why in reason
    assert not is_store_path(path, STORE)


def test_store_dir_must_be_absolute() -> None:
    assert not is_store_path(f"nix/store/{H}-x", "nix/store")
    assert not is_store_path(f"/{H}-x", "/")


def test_other_store_dir() -> None:
    assert is_store_path(f"/tmp/t/store/{H}-x", "/tmp/t/store")
    assert not is_store_path(f"{STORE}/{H}-x", "/tmp/t/store")


def test_is_derivation() -> None:
    assert is_derivation(f"{STORE}/{H}-x.drv", STORE)
    assert not is_derivation(f"{STORE}/{H}-x", STORE)
    assert not is_derivation(f"/tmp/{H}-x.drv", STORE)


def test_cache_names() -> None:
    """A cache names a path by its hash alone: a name with '-' in it changes nothing, and a
    base name (a narinfo's References) gives the same as the whole path."""
    assert hash_part(f"{STORE}/{H}-foo-bar-1.0") == H
    assert hash_part(f"{H}-foo-bar-1.0") == H
    assert narinfo_name(f"/tmp/t/store/{H}-x") == f"{H}.narinfo"


hashes = st.text(alphabet=sorted(NIX_BASE32), min_size=32, max_size=32)
names = st.text(alphabet=sorted(NAME_CHARS), min_size=1, max_size=MAX_NAME_LEN).filter(
    lambda n: not n.startswith("."))


@given(hashes, names)
def test_generated_valid_paths(digest: str, name: str) -> None:
    assert is_store_path(f"{STORE}/{digest}-{name}", STORE)


@given(hashes, names, st.text(min_size=1, max_size=5))
def test_any_foreign_character_is_refused(digest: str, name: str, junk: str) -> None:
    path = f"{STORE}/{digest}-{name}{junk}"
    expected = NAME_CHARS.issuperset(junk) and len(name + junk) <= MAX_NAME_LEN
    assert is_store_path(path, STORE) == expected


@given(st.text(max_size=300))
def test_accepted_paths_are_safe(path: str) -> None:
    """Whatever is accepted has no shell, line or path-traversal characters."""
    if is_store_path(path, STORE):
        rest = path[len(STORE) + 1:]
        assert "/" not in rest and ".." not in rest[:33]
        assert not set(path) & set("\n\0 ;$`'\"\\|&<>*")
