from __future__ import annotations

import json

import pytest

from nix_push_queue.daemon.filters import (
    PathInfo,
    PathInfoError,
    excluded,
    parse_path_infos,
    path_name,
    upstream_signed,
)

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


def test_parse_path_infos_nix_2_8_shape() -> None:
    text = json.dumps([
        {"path": f"{P}-a", "narHash": "sha256-x", "references": [f"{P}-b"],
         "signatures": ["cache.nixos.org-1:abc=="]},
        {"path": f"{P}-b", "narHash": "sha256-y", "references": []},
        {"path": f"{P}-c", "valid": False},
    ])
    infos = parse_path_infos(text)
    assert infos == [
        PathInfo(f"{P}-a", (f"{P}-b",), ("cache.nixos.org-1:abc==",)),
        PathInfo(f"{P}-b", (), ()),
    ]


@pytest.mark.parametrize("text", ["not json", "{}", "[{\"narHash\": 1}]", "[1]"])
def test_parse_path_infos_rejects_garbage(text: str) -> None:
    with pytest.raises(PathInfoError):
        parse_path_infos(text)


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
