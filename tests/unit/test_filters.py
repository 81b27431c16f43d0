from __future__ import annotations

import pytest

from nix_push_queue.daemon.filters import excluded, path_name, upstream_signed
from nix_push_queue.nix.pathinfo import PathInfo

HASH = "0" * 32
P = f"/nix/store/{HASH}"


@pytest.mark.parametrize(("path", "name"), [
    (f"{P}-hello-2.12", "hello-2.12"),
    (f"{P}-foo.drv", "foo.drv"),
    (f"/tmp/x/store/{HASH}-a-b-c/", "a-b-c"),
    ("/nix/store/short-name", "short-name"),
])
def test_path_name(path: str, name: str) -> None:
    assert path_name(path) == name


@pytest.mark.parametrize(("name", "patterns", "expected"), [
    ("foo.drv", ["*.drv"], True),
    ("nixpkgs-source", ["*.drv", "*-source"], True),
    ("source-highlight-3.1", ["*-source"], False),
    ("hello", [], False),
    ("Hello", ["hello"], False),  # case-sensitive, as store paths are
    ("hello", ["h?llo"], True),
])
def test_excluded(name: str, patterns: list[str], expected: bool) -> None:
    assert excluded(f"{P}-{name}", patterns) is expected


def test_excluded_matches_the_name_not_the_hash() -> None:
    assert not excluded(f"{P}-hello", ["0*"])


def test_upstream_signed_compares_key_names() -> None:
    infos = [
        PathInfo("a", (), ("cache.nixos.org-1:sig",)),
        PathInfo("b", (), ("my-cache-1:sig", "other:sig")),
        PathInfo("c", (), ()),
        PathInfo("d", (), ("cache.nixos.org-10:sig",)),  # a different key, same prefix
    ]
    assert upstream_signed(infos, ["cache.nixos.org-1"]) == {"a"}
    assert upstream_signed(infos, ["cache.nixos.org-1", "other"]) == {"a", "b"}
    assert upstream_signed(infos, []) == frozenset()
