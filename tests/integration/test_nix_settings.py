"""The NixOS module's pure parts, evaluated by the real nix-instantiate, agree with Python.

- nix/schema-defaults.nix fills a document exactly as config/schema.py does;
- nix/nix-settings.nix gives the settings the generator's nix.conf fragment holds, compared
  value by value and as real Nix reads both (`nix config show --json`, `show-config` before 2.20);
- nix/checks.nix refuses what it should, with messages naming the setting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.config import load_document
from nix_push_queue.config.source import read_source
from nix_push_queue.generate import FRAGMENT, GenerateOptions, generate
from nix_push_queue.nix import dialect
from nix_push_queue.nix.isolated import IsolatedNix
from nix_push_queue.nix.pathinfo import parse_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (REPO / "schema" / "examples").iterdir()
                  if p.suffix in (".yaml", ".yml", ".json", ".nix"))
HOOK = "/etc/nix-push-queue/post-build-hook"
KEY = "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="

# Branches the examples may not reach: replaced lists, priorities, URL options that need
# percent-encoding, secret-key-files, a disabled hook.
SYNTHETIC: dict[str, dict[str, Any]] = {
    "replace-defaults": {
        "targets": [{"name": "a", "url": "file:///srv/cache", "substitute": True,
                     "public_key": KEY, "priority": 30}],
        "substituters": {"urls": ["https://extra.example.org", "file:///srv/cache?priority=30"],
                         "trusted_public_keys": [KEY], "keep_defaults": False},
        "nix": {"secret_key_files": ["/etc/nix/key.sec"]},
    },
    "options": {
        "targets": [{"name": "s3", "url": "s3://bucket?profile=x", "substitute": True,
                     "public_key": KEY,
                     "options": {"endpoint": "http://minio:9000/a&b=c", "region": "eu-west-1",
                                 "trusted": True, "multipart-upload": 5}}],
    },
    "hook-off": {"targets": [{"name": "a", "url": "ssh-ng://cache"}], "hook": {"enable": False}},
    "consumer": {"substituters": {"urls": ["http://cache.lan"], "trusted_public_keys": [KEY]}},
}


def cases() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = [(p.name, p) for p in EXAMPLES]
    return found + sorted(SYNTHETIC.items())


def raw_document(case: Any) -> Any:
    return read_source(case).data if isinstance(case, Path) else case


def nix_eval(nix: IsolatedNix, expr: str) -> Any:
    proc = nix.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
                   timeout=120)
    return json.loads(proc.stdout)


def nix_side(nix: IsolatedNix, document: Any, tmp_path: Path) -> Any:
    """(filled document, nix settings, failed assertion messages) as the module computes them."""
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps(document), encoding="utf-8")
    expr = f"""
      let
        schema = builtins.fromJSON (builtins.readFile {REPO}/schema/config.schema.json);
        raw = import {REPO}/nix/settings-json.nix (builtins.fromJSON (builtins.readFile {doc}));
        filled = import {REPO}/nix/schema-defaults.nix schema raw;
        checks = import {REPO}/nix/checks.nix {{ config = filled; storeDir = "/nix/store"; }};
      in {{
        inherit filled;
        settings = import {REPO}/nix/nix-settings.nix {{ config = filled; hook = "{HOOK}"; }};
        failed = map (c: c.message) (builtins.filter (c: !c.assertion) checks);
      }}"""
    return nix_eval(nix, expr)


def fragment_settings(text: str) -> dict[str, list[str]]:
    settings = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.split()
    return settings


def as_words(settings: dict[str, Any]) -> dict[str, list[str]]:
    return {k: v.split() if isinstance(v, str) else list(v) for k, v in settings.items()}


@pytest.mark.parametrize(("name", "case"), cases(), ids=[c[0] for c in cases()])
def test_module_settings_match_generator(name: str, case: Any, nix: IsolatedNix,
                                         tmp_path: Path) -> None:
    document = raw_document(case)
    config = load_document(document, name)
    got = nix_side(nix, document, tmp_path)
    assert got["filled"] == json.loads(json.dumps(config.document))
    fragment = generate(config, GenerateOptions(executable="/bin/npq"))[FRAGMENT]
    assert as_words(got["settings"]) == fragment_settings(fragment)
    assert got["failed"] == []


def show_config(nix: IsolatedNix, conf: str) -> dict[str, Any]:
    nix.conf_file.write_text(conf, encoding="utf-8")
    proc = nix.run(dialect.detect(None, nix.env()).config_show_json(), timeout=120)
    shown = parse_settings(proc.stdout)
    return {k: shown[k] for k in
            ("substituters", "trusted-public-keys", "secret-key-files", "post-build-hook")}


def test_real_nix_reads_the_same(nix: IsolatedNix, tmp_path: Path) -> None:
    """Both renderings through real Nix's parser: the resulting settings are identical."""
    document = SYNTHETIC["replace-defaults"]
    config = load_document(document, "replace-defaults")
    settings = nix_side(nix, document, tmp_path)["settings"]
    base = nix.conf_file.read_text(encoding="utf-8")
    from_module = "".join(
        f"{k} = {v if isinstance(v, str) else ' '.join(v)}\n" for k, v in settings.items())
    fragment = generate(config, GenerateOptions(executable="/bin/npq"))[FRAGMENT]
    module_view = show_config(nix, base + from_module)
    generator_view = show_config(nix, base + fragment)
    assert module_view == generator_view
    assert module_view["substituters"] == ["file:///srv/cache?priority=30",
                                           "https://extra.example.org"]
    assert module_view["post-build-hook"] == HOOK


BROKEN: dict[str, tuple[dict[str, Any], str]] = {
    "secret in store": (
        {"targets": [{"name": "a", "url": "file:///c", "secret_key_file": "/nix/store/k"}]},
        "targets.0.secret_key_file is inside /nix/store"),
    "ssh key in store": (
        {"targets": [{"name": "a", "url": "ssh://c", "ssh_key_file": "/nix/store/k"}]},
        "targets.0.ssh_key_file is inside /nix/store"),
    "duplicate names": (
        {"targets": [{"name": "a", "url": "file:///c"}, {"name": "a", "url": "file:///d"}]},
        'targets.1: the name "a" is used by an earlier target too'),
    "substitute without key": (
        {"targets": [{"name": "a", "url": "file:///c", "substitute": True}]},
        'targets.0 ("a") has substitute = true but no public_key'),
    "other store dir": ({"nix": {"store_dir": "/gnu/store"}}, "nix.store_dir is /gnu/store"),
    "signing key in store": ({"nix": {"secret_key_files": ["/nix/store/x"]}},
                             "nix.secret_key_files.0 is inside /nix/store"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_module_assertions(name: str, nix: IsolatedNix, tmp_path: Path) -> None:
    document, expected = BROKEN[name]
    failed = nix_side(nix, document, tmp_path)["failed"]
    assert len(failed) == 1
    assert expected in failed[0]
    assert failed[0].startswith("services.nix-push-queue.settings")
