"""Failure classification with real failures, and secrets kept out of every message."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from nix_push_queue.daemon.storeurl import TargetKeys
from nix_push_queue.nix import stores
from nix_push_queue.nix.isolated import IsolatedNix

from ..fixtures.nginx import NginxCache
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


def test_http_cache_down_is_transient_then_ok(
        nix: IsolatedNix, signing_key: SigningKey, nginx_cache: NginxCache,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = build(nix, "outage").path
    config = make_config(target_doc("http", nginx_cache.url, signing_key))
    nginx_cache.stop()
    down = upload(config, nix, [path])
    assert down.kind == "transient", down.message
    assert "connect" in down.message.lower()
    assert "secret-key=<redacted>" in down.message or "secret-key" not in down.message
    nginx_cache.start()
    up = upload(config, nix, [path])
    assert up.kind == "ok", up.message
    assert narinfo_sigs(nix, nginx_cache.url, path)
    for text in (down.message, up.message, caplog.text):
        assert signing_key.content() not in text
        assert f"secret-key={signing_key.secret}" not in text


def test_upload_timeout_kills_nix_copy(nix: IsolatedNix, signing_key: SigningKey) -> None:
    # A cache that accepts the connection and never answers (Nix waits up to the transport's
    # stall timeout, 60 s): a 1 s deadline must cut it short.
    path = build(nix, "deadline").path
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nothing is ever read
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config = make_config(target_doc("http", url, signing_key),
                             queue={"upload_timeout": 1})
        started = time.monotonic()
        result = upload(config, nix, [path])
        elapsed = time.monotonic() - started
    assert result.kind == "transient"
    assert "timed out" in result.message
    print(f"upload killed after {elapsed:.2f} s (timeout 1 s)")


def test_s3_on_debian_nix_is_permanent_and_redacted(
        nix: IsolatedNix, signing_key: SigningKey, tmp_path: Path) -> None:
    creds = tmp_path / "aws-credentials"
    creds.write_text("[default]\naws_access_key_id = AKIDEXAMPLE\n"
                     "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
    if stores.s3_support(None, nix.env()).supported:
        pytest.skip("this Nix has the S3 store (Debian's 2.34): tests/integration/test_s3.py")
    path = build(nix, "s3").path
    config = make_config(target_doc("s3", "s3://bucket", signing_key,
                                    credentials_file=str(creds),
                                    options={"region": "eu-west-1"}))
    result = upload(config, nix, [path])
    assert result.kind == "permanent", result.message
    assert "don't know how to open Nix store" in result.message
    if "s3://" in result.message:  # Nix 2.8 echoes the URL; 2.26 names only the scheme
        assert "secret-key=<redacted>" in result.message
    assert str(signing_key.secret) not in result.message
    assert signing_key.content() not in result.message
    assert "wJalrXUtnFEMI" not in result.message


def test_garbage_collected_path_is_gone_not_failed(
        nix: IsolatedNix, signing_key: SigningKey, tmp_path: Path) -> None:
    kept = build(nix, "kept").path
    collected = build(nix, "collected").path
    nix.run(["nix-store", "--delete", str(collected)])
    url = f"file://{tmp_path / 'cache'}"
    config = make_config(target_doc("file", url, signing_key))
    result = upload(config, nix, [kept, collected])
    assert result.kind == "ok", result.message
    assert result.gone == (str(collected),)
    assert narinfo_sigs(nix, url, kept)
    only_gone = upload(config, nix, [collected])
    assert only_gone.kind == "ok" and only_gone.gone == (str(collected),)


@pytest.mark.parametrize("problem", ["corrupt", "missing"])
def test_bad_secret_key_is_permanent_without_leaking(
        nix: IsolatedNix, signing_key: SigningKey, tmp_path: Path, problem: str) -> None:
    path = build(nix, "badkey").path
    url = f"file://{tmp_path / 'cache'}"
    config = make_config(target_doc("file", url, signing_key))
    bad = tmp_path / "resolved-secret-key"
    if problem == "corrupt":
        # Looks like a key but is not one; its text must not be echoed either.
        bad.write_text("test-cache-1:c2VjcmV0LWJ1dC1icm9rZW4=")
    keys = {"file": TargetKeys(secret_key=str(bad))}
    result = upload(config, nix, [path], keys=keys)
    assert result.kind == "permanent", result.message
    assert "c2VjcmV0LWJ1dC1icm9rZW4" not in result.message
    assert signing_key.content() not in result.message
    assert not narinfo_sigs(nix, url, path)


def test_resolved_key_path_is_used_over_configured(
        nix: IsolatedNix, signing_key: SigningKey, tmp_path: Path) -> None:
    # The daemon passes CREDENTIALS_DIRECTORY copies; the configured path may not exist.
    path = build(nix, "resolved").path
    url = f"file://{tmp_path / 'cache'}"
    config = make_config(target_doc("file", url, signing_key))
    moved = tmp_path / "credentials" / "file-secret-key"
    moved.parent.mkdir()
    signing_key.secret.rename(moved)
    result = upload(config, nix, [path], keys={"file": TargetKeys(secret_key=str(moved))})
    assert result.kind == "ok", result.message
    assert any(s.startswith("test-cache-1:") for s in narinfo_sigs(nix, url, path))


def test_ssh_key_parameter_and_ssh_failures(
        nix: IsolatedNix, signing_key: SigningKey, sshd: SshServer) -> None:
    sshd.trust(signing_key.public)
    path = build(nix, "sshkey").path
    env = sshd.client_env(with_key=False)  # ssh itself knows no identity
    no_key = make_config(target_doc("remote", sshd.url("ssh-ng"), signing_key))
    refused = upload(no_key, nix, [path], env=env)
    assert refused.kind == "permanent", refused.message
    assert "permission denied" in refused.message.lower()

    with_key = make_config(target_doc("remote", sshd.url("ssh-ng"), signing_key,
                                      ssh_key_file=str(sshd.client_key)))
    result = upload(with_key, nix, [path], env=env)
    assert result.kind == "ok", result.message
    assert narinfo_sigs(nix, sshd.remote_store, path)

    sshd.stop()
    other = build(nix, "sshdown").path
    down = upload(with_key, nix, [other], env=env)
    assert down.kind == "transient", down.message
    assert "ssh-key=<redacted>" in down.message or "ssh-key" not in down.message
