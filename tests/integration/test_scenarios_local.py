"""The VM scenarios (vm-tests/scenarios) run unchanged on local stand-in machines: an isolated
Nix per machine, the real hook, the real daemon, a real file://, nginx or sshd-fronted cache.

Every VM test has its mirror here except s3 (Debian's Nix 2.8 has no S3 support)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nix_push_queue.nix.isolated import IsolatedNix
from tests.fixtures.local_machine import (
    Builder,
    make_builder,
    make_consumer,
    nginx_machine,
    sshd_machine,
)
from tests.fixtures.nginx import NginxCache
from tests.fixtures.sshd import SshServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "vm-tests"))

from scenarios import consumer, crash, file_cache, outage, ssh_ng

pytestmark = pytest.mark.integration


@pytest.fixture
def file_builder(tmp_path: Path, short_run_dir: Path) -> Iterator[tuple[Builder, Path]]:
    cache = tmp_path / "cache"
    builder = make_builder(tmp_path / "builder", short_run_dir, f"file://{cache}")
    try:
        yield builder, cache
    finally:
        builder.machine.shutdown()


@pytest.fixture
def http_builder(tmp_path: Path, short_run_dir: Path,
                 nginx_cache: NginxCache) -> Iterator[Builder]:
    builder = make_builder(tmp_path / "builder", short_run_dir, nginx_cache.url)
    try:
        yield builder
    finally:
        builder.machine.shutdown()


def test_file_cache(file_builder: tuple[Builder, Path]) -> None:
    builder, cache = file_builder
    params = file_cache.Params(cache_url=f"file://{cache}",
                               public_key_file=str(builder.public_key_file), timeout=300)
    built = file_cache.run(builder.machine, params)
    assert len(built) == 1
    assert list(cache.glob("*.narinfo"))


def test_outage(http_builder: Builder, nginx_cache: NginxCache, tmp_path: Path) -> None:
    cache = nginx_machine(nginx_cache, tmp_path)
    params = outage.Params(cache_url=nginx_cache.url, cache_unit="nginx.service",
                           public_key_file=str(http_builder.public_key_file), timeout=300)
    built = outage.run(http_builder.machine, cache, params)
    assert len(built) == params.count


def test_crash(http_builder: Builder, nginx_cache: NginxCache, tmp_path: Path) -> None:
    cache = nginx_machine(nginx_cache, tmp_path)
    params = crash.Params(cache_url=nginx_cache.url, cache_unit="nginx.service",
                          public_key_file=str(http_builder.public_key_file),
                          kill_daemon=http_builder.kill_daemon, timeout=300)
    http_builder.daemon.start()
    first_pid = http_builder.daemon.pid_file.read_text()
    built = crash.run(http_builder.machine, cache, params)
    assert len(built) == 4
    # The daemon really was killed and started again: a new process did the uploads.
    assert http_builder.daemon.pid_file.read_text() != first_pid


def test_consumer(file_builder: tuple[Builder, Path], tmp_path: Path) -> None:
    builder, cache = file_builder
    host = make_consumer(tmp_path / "consumer", f"file://{cache}", builder.nix.store_dir)
    params = consumer.Params(push_url=f"file://{cache}",
                             public_key_file=str(builder.public_key_file), timeout=300)
    consumer.run(builder.machine, host, params)


def test_ssh_ng(tmp_path: Path, short_run_dir: Path) -> None:
    """Two stores: the builder's, and the cache machine's behind a real sshd. The daemon gets
    the ssh key only from the target's `ssh_key_file` (its ssh config names no identity), and
    sshd accepts the key only once the scenario has added it to authorized_keys."""
    nix = IsolatedNix.create(tmp_path / "builder" / "nix")
    server = SshServer(tmp_path / "sshd", nix)
    authorized_keys = server.root / "authorized_keys"
    authorized_keys.write_text("", encoding="utf-8")
    builder = make_builder(tmp_path / "builder", short_run_dir, server.url("ssh-ng"),
                           target_extra={"ssh_key_file": str(server.client_key)}, nix=nix,
                           extra_env=server.client_env({}, with_key=False))
    cache = sshd_machine(server, tmp_path)
    params = ssh_ng.Params(store_url=f"{server.url('ssh-ng')}?ssh-key={server.client_key}",
                           public_key_file=str(builder.public_key_file),
                           ssh_public_key_file=f"{server.client_key}.pub",
                           authorized_keys=str(authorized_keys),
                           trust_conf=str(server.remote / "etc" / "nix.conf"), timeout=300)
    try:
        built = ssh_ng.run(builder.machine, cache, params)
    finally:
        builder.machine.shutdown()
        cache.shutdown()
    assert len(built) == 1
    # The copy the builder substituted back came from the other store, which still has it.
    remote_copy = server.remote / "root" / "nix" / "store" / Path(built[0].path).name
    assert remote_copy.read_text(encoding="utf-8") == built[0].content
