"""The real `nix copy` to real caches: file://, http:// (nginx WebDAV), ssh-ng:// and ssh://.

Each test uploads a path with a reference, checks the narinfo is signed by the target's key,
deletes the paths locally and gets them back with signatures required, comparing content.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from nix_push_queue.nix.isolated import IsolatedNix

from ..fixtures.nginx import NginxCache
from ..fixtures.sshd import SshServer
from ..fixtures.upload import (
    SigningKey,
    build,
    delete_and_substitute,
    make_config,
    narinfo_sigs,
    target_doc,
    upload,
)

pytestmark = pytest.mark.integration


def _dep_and_top(nix: IsolatedNix) -> tuple[Path, str, Path, str]:
    dep = build(nix, "dep")
    top = build(nix, "top", deps=[dep])
    assert str(dep.path) in top.path.read_text()
    return dep.path, dep.content, top.path, top.path.read_text()


def _signed_by(sigs: list[str], key: SigningKey) -> bool:
    return any(s.startswith(key.name + ":") for s in sigs)


def _round_trip(nix: IsolatedNix, url: str, key: SigningKey) -> None:
    dep, dep_content, top, top_content = _dep_and_top(nix)
    config = make_config(target_doc("cache", url, key, compression="zstd"))
    result = upload(config, nix, [top])
    assert result.kind == "ok", result.message
    assert result.gone == () and result.skipped == ()
    # Recursive copy: the dependency is in the cache too, signed at upload.
    for path in (dep, top):
        assert _signed_by(narinfo_sigs(nix, url, path), key), path
    assert delete_and_substitute(nix, top, url, key.public, also_delete=[dep]) == top_content
    assert dep.read_text() == dep_content
    assert key.content() not in result.message


def test_file_cache_round_trip(nix: IsolatedNix, signing_key: SigningKey, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _round_trip(nix, f"file://{cache}", signing_key)
    assert any(cache.glob("nar/*.nar.zst")), "compression=zstd was not applied"


def test_http_cache_round_trip(nix: IsolatedNix, signing_key: SigningKey,
                               nginx_cache: NginxCache) -> None:
    _round_trip(nix, nginx_cache.url, signing_key)
    assert any(nginx_cache.cache_dir.glob("*.narinfo"))
    assert " 201 " in nginx_cache.access_log() or " 204 " in nginx_cache.access_log()


@pytest.mark.parametrize("scheme", ["ssh-ng", "ssh"])
def test_ssh_round_trip(nix: IsolatedNix, signing_key: SigningKey, sshd: SshServer,
                        scheme: str) -> None:
    sshd.trust(signing_key.public)
    dep, _, top, top_content = _dep_and_top(nix)
    config = make_config(target_doc("remote", sshd.url(scheme), signing_key))
    env = sshd.client_env()
    result = upload(config, nix, [top], env=env)
    assert result.kind == "ok", result.message
    # Signed locally with `nix store sign` before the copy; the remote store holds the sigs.
    for path in (dep, top):
        assert _signed_by(narinfo_sigs(nix, sshd.remote_store, path), signing_key), path
    # Really the other store: its files live under the remote root, not in ours.
    remote_copy = sshd.remote / "root" / "nix" / "store" / top.name
    assert remote_copy.read_text() == top_content
    nix.run(["nix-store", "--delete", str(top)])
    subprocess.run(["nix", "copy", "--from", sshd.url(scheme), str(top),
                    "--option", "trusted-public-keys", signing_key.public,
                    "--option", "require-sigs", "true"],
                   env=env, check=True, capture_output=True, timeout=120)
    assert top.read_text() == top_content


def test_ssh_ng_remote_not_trusting_key_is_permanent(
        nix: IsolatedNix, signing_key: SigningKey, sshd: SshServer) -> None:
    top = build(nix, "untrusted").path
    config = make_config(target_doc("remote", sshd.url("ssh-ng"), signing_key))
    result = upload(config, nix, [top], env=sshd.client_env())
    assert result.kind == "permanent", result.message
    # Nix 2.8: "lacks a valid signature"; 2.26 and 2.34: "lacks a signature by a trusted key"
    assert re.search(r"lacks a (valid )?signature", result.message), result.message
