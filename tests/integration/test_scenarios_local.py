"""The VM scenarios (vm-tests/scenarios) run unchanged on local stand-in machines: an isolated
Nix per machine, the real hook, the real daemon, a real file:// or nginx cache."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.local_machine import (
    Builder,
    make_builder,
    make_consumer,
    nginx_machine,
)
from tests.fixtures.nginx import NginxCache

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "vm-tests"))

from scenarios import consumer, crash, file_cache, outage

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
