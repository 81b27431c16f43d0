"""The Debian mirror and proxy for debootstrap come from the host's apt configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vm.mirror import DEFAULT, apt_proxy_conf, host_mirror, host_proxy, proxy_env


def _etc(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        f = tmp_path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return tmp_path


def test_deb822_archive_is_taken_and_security_is_not(tmp_path: Path) -> None:
    etc = _etc(tmp_path, {"sources.list.d/debian.sources": (
        "Types: deb\nURIs: http://mirror.local/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.local/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")})
    assert host_mirror(etc, env={}) == "http://mirror.local/debian"


def test_one_line_sources_with_options(tmp_path: Path) -> None:
    etc = _etc(tmp_path, {"sources.list": (
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://apt-cacher:3142/debian trixie main\n")})
    assert host_mirror(etc, env={}) == "http://apt-cacher:3142/debian"


def test_disabled_stanza_and_foreign_archives_fall_back(tmp_path: Path) -> None:
    etc = _etc(tmp_path, {
        "sources.list.d/off.sources": ("Enabled: no\nTypes: deb\nURIs: http://off/debian\n"
                                       "Suites: bookworm\n"),
        "sources.list.d/ubuntu.sources": ("Types: deb\nURIs: http://archive.ubuntu.com/ubuntu\n"
                                          "Suites: noble noble-updates\n"),
        "sources.list.d/node.list": "deb https://deb.nodesource.example/node_20.x nodistro main\n",
    })
    assert host_mirror(etc, env={}) == DEFAULT


def test_environment_overrides(tmp_path: Path) -> None:
    etc = _etc(tmp_path, {"sources.list": "deb http://a/debian bookworm main\n"})
    assert host_mirror(etc, env={"NPQ_DEBIAN_MIRROR": "http://b/debian/"}) == "http://b/debian"


def test_apt_proxy_reaches_debootstrap_and_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    dump = 'APT "";\nAcquire "";\nAcquire::http "";\nAcquire::http::Proxy "http://p:3128";\n'
    proxy = host_proxy(dump)
    assert proxy == "http://p:3128"
    monkeypatch.delenv("http_proxy", raising=False)
    assert proxy_env(proxy)["http_proxy"] == "http://p:3128"
    monkeypatch.setenv("http_proxy", "http://mine:8080")
    assert proxy_env(proxy)["http_proxy"] == "http://mine:8080"
    assert apt_proxy_conf(proxy) == 'Acquire::http::Proxy "http://p:3128";\n'
    assert host_proxy('Acquire::http::Proxy "DIRECT";\n') is None
    assert host_proxy("") is None
    assert apt_proxy_conf(None) == ""
