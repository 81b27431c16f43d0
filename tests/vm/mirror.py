"""The Debian mirror for debootstrap: the one the host's apt already uses.

A machine behind a local mirror or a caching proxy has it in its apt sources (deb822
`*.sources` or one-line `sources.list`); the matrix roots and the VM image take it from there,
so they build wherever the host's own `apt-get` works. `NPQ_DEBIAN_MIRROR` overrides the choice;
a host whose sources name no Debian archive (Ubuntu, say) falls back to Debian's own redirector.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

DEFAULT = "http://deb.debian.org/debian"
APT_ETC = Path("/etc/apt")
# Suites the main archive serves; -security, -updates, -backports and -proposed-updates live
# elsewhere or are partial, so a source listing only those is not a mirror of the archive.
ARCHIVE_SUITE = re.compile(r"^(oldoldstable|oldstable|stable|testing|unstable|sid|buster|"
                           r"bullseye|bookworm|trixie|forky|duke)$")


def host_mirror(etc: Path = APT_ETC, env: dict[str, str] | None = None) -> str:
    """The Debian archive URI the host's apt uses, `NPQ_DEBIAN_MIRROR`, or `DEFAULT`."""
    env = dict(os.environ) if env is None else env
    override = env.get("NPQ_DEBIAN_MIRROR", "").strip()
    if override:
        return override.rstrip("/")
    for uri, suites in _entries(etc):
        if any(ARCHIVE_SUITE.match(s) for s in suites) and not uri.startswith("cdrom:"):
            return uri.rstrip("/")
    return DEFAULT


def _entries(etc: Path) -> Iterator[tuple[str, list[str]]]:
    """(URI, suites) of each enabled `deb` source, sources.list first, then sources.list.d."""
    main = etc / "sources.list"
    if main.is_file():
        yield from _one_line(main.read_text(errors="replace").splitlines())
    parts = etc / "sources.list.d"
    if parts.is_dir():
        for f in sorted(parts.iterdir()):
            if f.suffix == ".list":
                yield from _one_line(f.read_text(errors="replace").splitlines())
            elif f.suffix == ".sources":
                yield from _deb822(f.read_text(errors="replace"))


def _one_line(lines: Iterable[str]) -> Iterator[tuple[str, list[str]]]:
    for line in lines:
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], [words[2]]


def _deb822(text: str) -> Iterator[tuple[str, list[str]]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split()


def host_proxy(dump: str | None = None) -> str | None:
    """apt's `Acquire::http::Proxy` on the host (from `apt-config dump`), or None.

    debootstrap reads `http_proxy` from its environment, not apt's configuration, and apt inside
    a fresh root has none of the host's files: both get it from here."""
    if dump is None:
        try:
            dump = subprocess.run(["apt-config", "dump"], capture_output=True, text=True,
                                  timeout=30, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
    found = re.search(r'^Acquire::http::Proxy\s+"([^"]+)";', dump, re.MULTILINE)
    value = found.group(1).strip() if found else ""
    return value if value and value.upper() != "DIRECT" else None


def proxy_env(proxy: str | None) -> dict[str, str]:
    """The environment for a debootstrap run: the caller's, plus apt's proxy where it has one
    and the caller set none."""
    env = dict(os.environ)
    if proxy and not env.get("http_proxy"):
        env["http_proxy"] = proxy
    return env


def apt_proxy_conf(proxy: str | None) -> str:
    """An apt.conf.d snippet that gives a root the host's proxy ('' when there is none)."""
    return f'Acquire::http::Proxy "{proxy}";\n' if proxy else ""
