"""cachecheck's lookups that need a live peer: a real HTTP server (stdlib, on the loopback,
serving a cache directory) and the real `nix path-info --store` against a file:// cache. The
unit tests (tests/unit/test_cachecheck.py) need neither, as the package's test phase runs
them without a network."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from nix_push_queue.daemon.cachecheck import NixPathInfo, http_has
from nix_push_queue.nix.isolated import IsolatedNix, text_derivation
from tests.unit.test_cachecheck import HAVE, LOST, cache
from tests.unit.test_worker import target

__all__ = ["cache"]  # the fixture


@pytest.fixture
def http_url(cache: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(cache))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_http_lookups(http_url: str) -> None:
    web = replace(target("h"), url=http_url)
    assert http_has(web, HAVE) and not http_has(web, LOST)
    down = replace(target("d"), url="http://127.0.0.1:9/")  # nothing listens: not confirmed
    assert not http_has(down, HAVE)


def test_nix_path_info_for_other_stores(nix: IsolatedNix, tmp_path: Path) -> None:
    path = str(nix.build_expr(text_derivation("pi", str(time.time())))[0])
    url = f"file://{tmp_path / 'bc'}"
    nix.run(["nix", "--extra-experimental-features", "nix-command", "copy", "--to", url,
             path])
    lookup = NixPathInfo(None, nix.env(), lambda t: t.url)
    there = replace(target("s"), url=url)
    assert lookup(there, path)
    assert not lookup(replace(there, url=f"file://{tmp_path / 'empty'}"), path)


