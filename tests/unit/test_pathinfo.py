"""nix.pathinfo against every output recorded from the real Nix binaries
(tests/data/nix-dialects/<version>/, made by record.py there), plus malformed input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.nix.pathinfo import (
    NixOutputError,
    PathInfo,
    PathInfoError,
    parse_path_infos,
    parse_settings,
    to_sri,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "nix-dialects"
VERSIONS = sorted(p.name for p in DATA.iterdir() if (p / "version.txt").exists())
RECORDED = sorted(DATA.glob("*/path-info-*.json"))
SETTINGS = sorted(DATA.glob("*/config-*.json"))
KEY = "dialect-1"


def built(version_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((version_dir / "post-build-hook.json").read_text())
    return data


def test_every_version_was_recorded() -> None:
    """The three Nix versions of the matrix; a lost directory must not pass silently."""
    assert {v.rsplit(".", 1)[0] for v in VERSIONS} >= {"2.8", "2.26", "2.34"}
    forms = {p.name.split("-")[2] for p in RECORDED}
    assert forms == {"plain", "format1", "format2"}


@pytest.mark.parametrize("recorded", RECORDED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recorded_path_info(recorded: Path) -> None:
    meta = built(recorded.parent)
    top, dep = meta["built"]["top"], meta["built"]["dep"]
    query = recorded.stem.split("-", 3)[3]  # local, missing, cache, cache-missing
    infos = {i.path: i for i in parse_path_infos(recorded.read_text())}
    expected = {"local": {top, dep}, "missing": {top}, "cache": {top, dep},
                "cache-missing": set()}[query]
    assert set(infos) == expected
    if not infos:
        return
    assert infos[top].references == (dep,)  # full paths whatever form Nix printed
    assert infos[top].signed_by([KEY])  # signed locally with `nix store sign`
    assert not infos[top].signed_by(["dialect-10", "other"])
    if dep in infos:
        assert infos[dep].references == ()
        # Locally only `top` was signed; the cache signed both at upload (secret-key=).
        assert infos[dep].signed_by([KEY]) is query.startswith("cache")
    for path, info in infos.items():
        assert info.nar_size is not None and info.nar_size > 0
        assert info.nar_hash == to_sri(meta["nar_hashes"][path])


@pytest.mark.parametrize("version", VERSIONS)
def test_every_form_of_a_version_says_the_same(version: str) -> None:
    """Within one Nix, plain / format 1 / format 2 of one query parse to the same records."""
    by_query: dict[str, list[list[PathInfo]]] = {}
    for recorded in sorted((DATA / version).glob("path-info-*.json")):
        query = recorded.stem.split("-", 3)[3]
        by_query.setdefault(query, []).append(parse_path_infos(recorded.read_text()))
    for parsed in by_query.values():
        assert all(sorted(p, key=str) == sorted(parsed[0], key=str) for p in parsed)


def test_nar_size_and_hash_agree_across_versions() -> None:
    """The same derivations built by each Nix give the same NAR: one meaning per field."""
    seen = {(i.path, i.nar_size, i.nar_hash)
            for v in VERSIONS
            for i in parse_path_infos((DATA / v / "path-info-plain-local.json").read_text())}
    assert len(seen) == 2


@pytest.mark.parametrize("recorded", SETTINGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recorded_settings(recorded: Path) -> None:
    settings = parse_settings(recorded.read_text())
    assert settings["post-build-hook"] == "/tmp/npq-nix-dialects/hook.sh"
    assert settings["substituters"] == []
    assert settings["narinfo-cache-negative-ttl"] == 0


@pytest.mark.parametrize("text", [
    "not json", "1", '"a string"', "[1]", '[{"narHash": "x"}]',
    '{"/nix/store/a": 1}', '{"a-relative-key": {}}',
    '{"/nix/store/a": {"version": 3}}',
    '{"/nix/store/a": {"references": "/nix/store/b"}}',
    '{"/nix/store/a": {"signatures": [{"keyName": "k", "sig": "s"}]}}',
    '{"/nix/store/a": {"narSize": "12"}}',
    '{"/nix/store/a": {"narHash": {"algorithm": "sha256"}}}',
    '{"version": 3, "storeDir": "/nix/store", "info": {}}',
    '{"version": 2, "info": {}}',
    '{"version": 2, "storeDir": "/nix/store", "info": []}',
])
def test_unknown_forms_are_errors(text: str) -> None:
    with pytest.raises(PathInfoError, match="nix path-info --json"):
        parse_path_infos(text)


def test_error_quotes_the_start_of_the_output() -> None:
    with pytest.raises(PathInfoError) as err:
        parse_path_infos('"' + "x" * 1000 + '"')
    assert "x" * 100 in str(err.value) and "x" * 300 not in str(err.value)


@pytest.mark.parametrize("text", ["", "[]", '{"a": 1}', '{"a": {"no-value": 1}}'])
def test_settings_errors(text: str) -> None:
    with pytest.raises(NixOutputError):
        parse_settings(text)


def test_to_sri_keeps_sri() -> None:
    assert to_sri("sha256-m3tO6QySnzrROXK7SHzUIOI6M0uRtlpVjrrPKNS/euQ=") == (
        "sha256-m3tO6QySnzrROXK7SHzUIOI6M0uRtlpVjrrPKNS/euQ=")
    with pytest.raises(NixOutputError):
        to_sri("sha256:not-nix32!")
