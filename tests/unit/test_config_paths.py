"""Paths are normalized before any rule reads them (paths.py, semantic.py): a spelling of a
path never gets past a rule its plain spelling breaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from nix_push_queue.config import load_document
from nix_push_queue.config.paths import normalize
from nix_push_queue.errors import ConfigError

STORE_KEY = "0123456789abcdfghijklmnpqrsvwxyz-key"


def messages(doc: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_document(doc)
    found: dict[str, str] = {}
    for p in info.value.problems:
        found[p.path] = found.get(p.path, "") + p.message + "\n"
    return found


def target(**fields: object) -> dict[str, object]:
    return {"targets": [{"name": "a", "url": "file:///srv/a", **fields}]}


@pytest.mark.parametrize("path, plain", [
    ("//nix/store/x", "/nix/store/x"), ("/nix//store/./x/", "/nix/store/x"),
    ("/", "/"), ("///", "/"), ("/a/../b", "/a/../b"), ("/a/./", "/a"),
])
def test_normalize(path: str, plain: str) -> None:
    assert normalize(path) == plain


@pytest.mark.parametrize("spelling", [
    f"//nix/store/{STORE_KEY}", f"/nix/./store/{STORE_KEY}", f"/nix//store/{STORE_KEY}",
])
def test_secret_in_the_store_is_refused_however_spelled(spelling: str) -> None:
    found = messages(target(secret_key_file=spelling))
    assert "inside the Nix store" in found["targets[0].secret_key_file"]


def test_secret_linked_into_the_store_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "key"
    link.symlink_to(f"/nix/store/{STORE_KEY}")
    found = messages(target(secret_key_file=str(link)))
    assert "inside the Nix store" in found["targets[0].secret_key_file"]


@pytest.mark.parametrize("doc, field", [
    (target(secret_key_file=f"/nix/var/../store/{STORE_KEY}"), "targets[0].secret_key_file"),
    ({**target(), "queue": {"state_dir": "/var/lib/npq", "spool_dir": "/var/lib/npq/../npq"}},
     "queue.spool_dir"),
    ({**target(), "nix": {"nix_bin_dir": "/usr/../bin"}}, "nix.nix_bin_dir"),
    ({"targets": [{"name": "a", "url": "file:///srv/../etc"}]}, "targets[0].url"),
    ({"targets": [{"name": "a", "url": "file:///srv/%2E%2e/etc"}]}, "targets[0].url"),
    ({"substituters": {"urls": ["file:///srv/.."]}}, "substituters.urls[0]"),
])
def test_dotdot_is_refused_in_every_path(doc: dict[str, object], field: str) -> None:
    assert "'..'" in messages(doc)[field]


@pytest.mark.parametrize("state, spool", [
    ("/var/lib/npq", "/var/lib/npq/"), ("/var/lib/npq", "/var/lib//npq/."),
    ("/var/lib/./npq/", "//var/lib/npq"),
])
def test_spool_dir_equal_to_state_dir_is_refused_however_spelled(state: str,
                                                                 spool: str) -> None:
    found = messages({**target(), "queue": {"state_dir": state, "spool_dir": spool}})
    assert "must differ from state_dir" in found["queue.spool_dir"]


@pytest.mark.parametrize("url", ["file://srv/nix-cache", "file://localhost/srv/c",
                                 "file://srv", "file:///"])
def test_file_urls_are_absolute_paths_without_host(url: str) -> None:
    found = messages({"targets": [{"name": "a", "url": url}]})
    assert "targets[0].url" in found


def test_documents_carry_the_normalized_paths() -> None:
    config = load_document({
        "targets": [{"name": "a", "url": "file:///srv//a/?compression=zstd",
                     "secret_key_file": "/etc//nix/key"}],
        "queue": {"state_dir": "/var/lib/npq/", "spool_dir": "/var/lib/npq/./spool"},
    })
    assert config.targets[0].url == "file:///srv/a?compression=zstd"
    assert config.targets[0].secret_key_file == "/etc/nix/key"
    assert (config.queue.state_dir, config.queue.spool_dir) == ("/var/lib/npq",
                                                                "/var/lib/npq/spool")


def test_same_cache_spelled_twice_is_a_duplicate() -> None:
    found = messages({"targets": [{"name": "a", "url": "file:///srv/c"},
                                  {"name": "b", "url": "file:///srv//c/"}]})
    assert "duplicate target URL" in found["targets[1].url"]
