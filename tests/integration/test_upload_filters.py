"""Upload filters with real Nix: upstream-signed paths stay out of the cache; excludes."""

from __future__ import annotations

from pathlib import Path

import pytest

from nix_push_queue.nix.isolated import IsolatedNix

from ..fixtures.sshd import SshServer
from ..fixtures.upload import (
    SigningKey,
    build,
    make_config,
    narinfo_sigs,
    target_doc,
    upload,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def upstream_signed(nix: IsolatedNix, tmp_path: Path) -> tuple[Path, Path]:
    """(dep, top): `dep` carries a signature by an "upstream" key, as if substituted from
    cache.nixos.org; `top` references it and is only signed by nobody."""
    upstream_secret, _ = nix.generate_key("upstream.example.org-1", tmp_path)
    dep = build(nix, "upstream-dep")
    top = build(nix, "local-top", deps=[dep])
    nix.run(["nix", "store", "sign", "--key-file", str(upstream_secret), str(dep.path)])
    return dep.path, top.path


def test_skip_signed_by_skips_upstream_paths(
        nix: IsolatedNix, signing_key: SigningKey, tmp_path: Path,
        upstream_signed: tuple[Path, Path]) -> None:
    dep, top = upstream_signed
    url = f"file://{tmp_path / 'cache'}"
    config = make_config(target_doc("file", url, signing_key),
                         filters={"skip_signed_by": ["upstream.example.org-1"]})
    # Queued by itself (e.g. substituted, pushed with `push --closure`), an upstream-signed
    # path is skipped and reported, while its dependent in the same batch is uploaded.
    result = upload(config, nix, [dep, top])
    assert result.kind == "ok", result.message
    assert result.skipped == (str(dep),)
    assert narinfo_sigs(nix, url, top), "the dependent was not uploaded"
    # Nix 2.8 keeps binary caches closed: the dependent brought the dependency along,
    # signed by our key like any other upload.
    assert any(s.startswith("test-cache-1:") for s in narinfo_sigs(nix, url, dep))


def test_skip_signed_by_alone_uploads_nothing(
        nix: IsolatedNix, signing_key: SigningKey, tmp_path: Path,
        upstream_signed: tuple[Path, Path]) -> None:
    dep, _ = upstream_signed
    cache = tmp_path / "cache"
    config = make_config(target_doc("file", f"file://{cache}", signing_key),
                         filters={"skip_signed_by": ["other-key-1", "upstream.example.org-1"]})
    result = upload(config, nix, [dep])
    assert result.kind == "ok" and result.skipped == (str(dep),)
    assert not cache.exists() or not any(cache.glob("*.narinfo"))


def test_without_filter_the_whole_closure_is_uploaded(
        nix: IsolatedNix, signing_key: SigningKey, tmp_path: Path,
        upstream_signed: tuple[Path, Path]) -> None:
    dep, top = upstream_signed
    url = f"file://{tmp_path / 'cache'}"
    result = upload(make_config(target_doc("file", url, signing_key)), nix, [top])
    assert result.kind == "ok", result.message
    assert narinfo_sigs(nix, url, dep) and narinfo_sigs(nix, url, top)


def test_exclude_patterns_skip_roots(nix: IsolatedNix, signing_key: SigningKey,
                                     tmp_path: Path) -> None:
    source = build(nix, "thing-source").path
    kept = build(nix, "thing").path
    url = f"file://{tmp_path / 'cache'}"
    config = make_config(target_doc("file", url, signing_key),
                         filters={"exclude": ["*-source"]})
    result = upload(config, nix, [source, kept])
    assert result.kind == "ok", result.message
    assert result.skipped == (str(source),)
    assert narinfo_sigs(nix, url, kept) and not narinfo_sigs(nix, url, source)


def test_skip_signed_by_on_ssh_store_skips_upstream_roots(
        nix: IsolatedNix, signing_key: SigningKey, sshd: SshServer,
        upstream_signed: tuple[Path, Path]) -> None:
    dep, top = upstream_signed
    sshd.trust(signing_key.public)
    config = make_config(target_doc("remote", sshd.url("ssh-ng"), signing_key),
                         filters={"skip_signed_by": ["upstream.example.org-1"]})
    result = upload(config, nix, [dep], env=sshd.client_env())
    assert result.kind == "ok" and result.skipped == (str(dep),)
    assert not narinfo_sigs(nix, sshd.remote_store, dep)
    # A store must stay closed: the dependent brings its whole closure along.
    result = upload(config, nix, [top], env=sshd.client_env())
    assert result.kind == "ok", result.message
    assert narinfo_sigs(nix, sshd.remote_store, top)
    assert narinfo_sigs(nix, sshd.remote_store, dep)
