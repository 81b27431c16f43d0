"""The post-build-hook client: hand a build's outputs to the daemon, or to the spool.

Nix runs the hook synchronously after every build and stops building if it fails, so this
module never raises out of `run` for anything the world does (daemon down or hung, disk
full) and bounds every wait by one deadline. It imports only the standard library's cheapest
modules (os, sys, time, _socket, _json; subprocess only when Nix 2.8.0 left OUT_PATHS empty
and the .drv file could not be read) and no dataclasses or typing: interpreter start-up is the
hook's main cost. Not even `json`, `re` or `socket`: they import `enum` and friends, which
cost more than everything else the hook does (measured by bench/profiling.py).
"""

from __future__ import annotations

# The C module under `socket.py`: same calls and exceptions, without selectors and enum.
import _socket as socket
import time

from ..nix import storepath
from ..wire import framing, gcroots, spool
from .hookoutputs import _aterm_output_paths, build_outputs, drv_outputs, query_outputs
from .hooksettings import PREFIX, SETTING_KEYS, Settings, log, resolve_settings

TYPE_CHECKING = False  # mypy reads this name as true; at run time `typing` stays unloaded
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["PREFIX", "SETTING_KEYS", "Settings", "_aterm_output_paths", "build_outputs",
           "drv_outputs", "log", "query_outputs", "resolve_settings", "root_paths", "run",
           "send", "spool_paths"]


# -- talking to the daemon -----------------------------------------------------------------


def _check_reply(line: bytes) -> None:
    if framing.too_deep(line):  # as the daemon checks requests, whatever the Python
        raise ValueError(f"reply nested deeper than {framing.MAX_DEPTH} levels")
    reply = framing.loads(line.decode("utf-8"))
    if not isinstance(reply, dict) or reply.get("v") != framing.VERSION:
        raise ValueError(f"unexpected reply {line[:200]!r}")
    if reply.get("ok") is not True:
        raise ValueError(f"daemon refused: {reply.get('error')}: {reply.get('message')}")


def send(socket_path: str, lines: Sequence[bytes], deadline: float) -> tuple[int, str | None]:
    """Send each request line and wait for its reply. Returns (lines acknowledged, why the
    rest were not, or None)."""
    acked = 0
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    except OSError as exc:
        return 0, f"cannot create a socket: {exc}"
    try:
        sock.settimeout(framing.remaining(deadline))
        sock.connect(socket_path)
        buf = b""
        for line in lines:
            sock.settimeout(framing.remaining(deadline))
            sock.sendall(line)
            reply, buf = framing.read_line(sock, buf, deadline)
            _check_reply(reply)
            acked += 1
        return acked, None
    except FileNotFoundError:
        return acked, f"no daemon socket at {socket_path}"
    except ConnectionRefusedError:
        return acked, f"no daemon listening on {socket_path}"
    except TimeoutError:
        return acked, "the daemon did not answer in time"
    except (OSError, ValueError) as exc:
        return acked, str(exc) or type(exc).__name__
    finally:
        sock.close()


# -- the whole hook ------------------------------------------------------------------------


def run(settings: Settings, out_paths: str, drv_path: str, env: Mapping[str, str]) -> str:
    """Queue this build's outputs and its derivation. Returns what happened: "sent",
    "spooled", "nothing" or "lost" (the spool failed too; logged). Raises only on bugs; the
    CLI catches those."""
    deadline = time.monotonic() + settings.timeout
    entries = build_outputs(out_paths, drv_path, settings, deadline, env)
    if not entries:
        return "nothing"
    paths = [e for e in entries if storepath.is_store_path(e, settings.store_dir)]
    unrooted = None
    if settings.roots_dir is not None and paths:
        # Before the daemon or the spool sees them, and before Nix goes on: from here until
        # every target has them, no garbage collection can delete them. (Outputs the hook
        # could not name are rooted by the daemon when it resolves them.)
        unrooted = root_paths(settings.roots_dir, paths, env)
    chunks = framing.enqueue_lines(entries, None, "hook")
    try:
        acked, why = send(settings.socket, [line for _, line in chunks], deadline)
    except Exception as exc:  # a bug must not lose the paths: spool them
        acked, why = 0, f"unexpected {type(exc).__name__}: {exc}"
    outcome = "sent"
    if why is not None:
        unsent = [p for chunk, _ in chunks[acked:] for p in chunk]
        outcome = spool_paths(settings.spool_dir, unsent, why)
    if unrooted is not None and outcome != "lost":  # a path not queued needs no root
        log(f"{unrooted}; they are queued, but a garbage collection may delete them before "
            "their upload")
    return outcome


def root_paths(roots_dir: str, paths: Sequence[str], env: Mapping[str, str]) -> str | None:
    """Make each path a GC root. Returns what went wrong, to be said once the paths' fate is
    known (None: all rooted); a failure never fails the build."""
    rooted, problem = gcroots.root_all(roots_dir, paths)
    state = env.get("NIX_STATE_DIR")
    if state and gcroots.roots_dir(state) != roots_dir:
        log(f"NIX_STATE_DIR is {state} but the roots go to {roots_dir}: set nix.state_dir "
            "in the config to the state directory of this Nix")
    if problem is None:
        return None
    return f"cannot make {len(paths) - rooted} path(s) GC roots in {roots_dir}: {problem}"


def spool_paths(spool_dir: str, paths: Sequence[str], why: str) -> str:
    """Write the entries (store paths, `DRV^*`) the daemon did not take to the spool."""
    try:
        file = spool.write_spool(spool_dir, paths)
    except Exception as exc:
        log(f"{why}; and the spool failed too, {len(paths)} path(s) NOT queued: {exc}")
        for path in paths:
            log(f"not queued: {path} (push it later with `nix-push-queue push`)")
        return "lost"
    log(f"{why}; spooled {len(paths)} path(s) to {file}")
    return "spooled"
