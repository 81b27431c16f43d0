"""A binary cache that answers an upload with 503 (issue 22): `nix copy` must fail at once
and leave the retrying to the queue. With Nix's own retries (Nix 2.8), the retried PUT sent
no body and hung until `stalled-download-timeout` (300 s) per retry, holding an upload slot
for 20 minutes or more.

The cache is a real HTTP server on loopback (stdlib): nix-cache-info served, narinfos
absent, every PUT read to its end and answered 503."""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest

from nix_push_queue.nix.isolated import IsolatedNix
from tests.fixtures.daemon import DaemonHarness

pytestmark = pytest.mark.integration

Factory = Callable[..., DaemonHarness]


class Refusing(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store_dir = "/nix/store"
    puts: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, code: int, body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.endswith("/nix-cache-info"):
            self._reply(200, f"StoreDir: {self.store_dir}\nWantMassQuery: 1\n".encode())
        else:
            self._reply(404)

    do_HEAD = do_GET

    def do_PUT(self) -> None:
        self.puts.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._reply(503, b"try later\n")


@pytest.fixture
def refusing_cache(nix: IsolatedNix) -> Iterator[tuple[str, type[Refusing]]]:
    handler = type("Handler", (Refusing,), {"puts": [], "store_dir": str(nix.store_dir)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_a_503_to_put_fails_the_copy_at_once(npq_daemon_factory: Factory,
                                              refusing_cache: tuple[str, type[Refusing]]
                                              ) -> None:
    url, handler = refusing_cache
    d = npq_daemon_factory(hook=False, queue={"retry": {"max_attempts": 1}})
    d.config["targets"][0]["url"] = url
    path = d.build("refused", uuid.uuid4().hex)
    d.start()
    started = time.monotonic()
    d.cli("push", str(path))
    waited = d.cli("wait", "--timeout", "90", check=False)
    seconds = time.monotonic() - started
    assert waited.returncode == 10, waited.stderr  # a dead letter, not a timeout (exit 9)
    assert "503" in waited.stderr
    assert len(handler.puts) == 1  # Nix did not retry the PUT itself
    print(f"measured: a 503 to PUT became a dead letter {seconds:.1f} s after the push")
    assert seconds < 60
