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
import os
import sys
import time

from ..nix import storepath
from ..wire import framing, gcroots, spool

TYPE_CHECKING = False  # mypy reads this name as true; at run time `typing` stays unloaded
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

PREFIX = "nix-push-queue hook: "
SETTING_KEYS = ("socket", "spool_dir", "store_dir", "timeout", "nix_bin_dir", "state_dir",
                "gc_roots")
# setting -> where it sits in the daemon's config.json: (section, ..., property); the schema's
# $defs has the same sections
_SCHEMA_PLACES = {
    "socket": ("queue", "socket"),
    "spool_dir": ("queue", "spool_dir"),
    "store_dir": ("nix", "store_dir"),
    "timeout": ("hook", "timeout"),
    "nix_bin_dir": ("nix", "nix_bin_dir"),
    "state_dir": ("nix", "state_dir"),
    "gc_roots": ("gc_roots", "enable"),
}
# sections nested in another one in config.json (the schema's $defs keeps them flat)
_NESTED = {"gc_roots": "queue"}
_DRV_READ = 1 << 16  # the outputs come first in a .drv; they fit in far less
_DRV_START = "Derive(["  # ATerm: Derive([("out","/nix/store/...-x","",""),...],...)


def log(message: str) -> None:
    """One line on stderr (Nix shows it in the build log). Never raises."""
    try:
        sys.stderr.write(PREFIX + message + "\n")
        sys.stderr.flush()
    except Exception:  # noqa: S110 - a closed stderr must not fail the build
        pass


class Settings:
    """What the hook needs; built by `resolve_settings`. A plain class, not a dataclass:
    the dataclasses module costs the hook more than everything else it imports."""

    __slots__ = ("nix_bin_dir", "roots_dir", "socket", "spool_dir", "store_dir", "timeout")

    def __init__(self, *, socket: str, spool_dir: str, store_dir: str, timeout: float,
                 nix_bin_dir: str | None, roots_dir: str | None = None) -> None:
        self.socket = socket
        self.spool_dir = spool_dir
        self.store_dir = store_dir
        self.timeout = timeout
        self.nix_bin_dir = nix_bin_dir
        self.roots_dir = roots_dir  # None: do not root (queue.gc_roots.enable false)


def _schema_defaults() -> dict[str, object]:
    """Defaults live only in the schema; read it with plain json (no jsonschema here)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(here, "config", "config.schema.json"), encoding="utf-8") as f:
        defs = framing.loads(f.read())["$defs"]
    return {key: defs[section]["properties"][prop].get("default")
            for key, (section, prop) in _SCHEMA_PLACES.items()}


def _config_section(doc: dict[str, object], section: str) -> object:
    outer = _NESTED.get(section)
    if outer is None:
        return doc.get(section)
    part = doc.get(outer)
    return part.get(section) if isinstance(part, dict) else None


def _from_config(path: str) -> dict[str, object]:
    """The settings found in the daemon's config.json; unreadable -> logged, none."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = framing.loads(f.read())
        found = {}
        for key, (section, prop) in _SCHEMA_PLACES.items():
            part = _config_section(doc, section)
            if isinstance(part, dict) and prop in part:
                found[key] = part[prop]
        return found
    except (OSError, ValueError, AttributeError) as exc:
        log(f"cannot read config {path}: {exc}; using defaults")
        return {}


def resolve_settings(given: Mapping[str, object], config_path: str | None,
                     env: Mapping[str, str] | None = None) -> Settings:
    """Flags (`given`) over the config file over the schema's defaults; the state directory
    given by neither is the environment's NIX_STATE_DIR, as for Nix itself."""
    values = dict(_from_config(config_path)) if config_path else {}
    values.update({k: v for k, v in given.items() if v is not None})
    if "state_dir" not in values and env and env.get("NIX_STATE_DIR"):
        values["state_dir"] = env["NIX_STATE_DIR"]
    if any(k not in values for k in SETTING_KEYS):
        defaults = _schema_defaults()
        values = {**defaults, **values}
    timeout = _positive(values["timeout"])
    if timeout is None:
        log(f"invalid timeout {values['timeout']!r}; using the default")
        timeout = _positive(_schema_defaults()["timeout"]) or 1.0
    bin_dir = values["nix_bin_dir"]
    roots = None if values["gc_roots"] is False else gcroots.roots_dir(str(values["state_dir"]))
    return Settings(socket=str(values["socket"]), spool_dir=str(values["spool_dir"]),
                    store_dir=str(values["store_dir"]), timeout=timeout,
                    nix_bin_dir=None if bin_dir is None else str(bin_dir), roots_dir=roots)


def _positive(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        return None
    return float(value)


# -- which paths ---------------------------------------------------------------------------


def drv_outputs(drv_path: str) -> list[str] | None:
    """Output paths written in the .drv file; None when it cannot tell (unreadable, another
    format, or content-addressed outputs whose paths are not known in advance)."""
    try:
        with open(drv_path, "rb") as f:
            text = f.read(_DRV_READ).decode("utf-8", "replace")
    except OSError:
        return None
    paths = _aterm_output_paths(text)
    return paths if paths and all(paths) else None


def _aterm_output_paths(text: str) -> list[str] | None:
    """The second field of each ("name","path","algo","hash") in Derive([...]; None if the
    text is not that shape or a field holds an escape. Plain string scanning: `re` costs the
    hook more to import than this costs to run."""
    if not text.startswith(_DRV_START):
        return None
    pos, paths = len(_DRV_START), []
    while text.startswith("(", pos):
        fields = []
        for closing in (",", ",", ",", ")"):
            if not text.startswith('"', pos + 1):
                return None
            end = text.find('"', pos + 2)
            if end < 0 or "\\" in text[pos + 2:end] or not text.startswith(closing, end + 1):
                return None
            fields.append(text[pos + 2:end])
            pos = end + 1
        paths.append(fields[1])
        pos += 1
        if text.startswith(",", pos):
            pos += 1
    return paths if text.startswith("]", pos) else None


def query_outputs(drv_path: str, nix_bin_dir: str | None, deadline: float,
                  env: Mapping[str, str]) -> list[str]:
    """`nix-store --query --outputs DRV`, killed at the deadline."""
    import shutil
    import subprocess

    nix_store = (os.path.join(nix_bin_dir, "nix-store") if nix_bin_dir
                 else shutil.which("nix-store", path=env.get("PATH", os.defpath)))
    if not nix_store:
        raise OSError("nix-store not found on PATH")
    proc = subprocess.run([nix_store, "--query", "--outputs", drv_path], env=dict(env),
                          capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                          timeout=max(0.05, deadline - time.monotonic()))
    if proc.returncode != 0:
        raise OSError(f"nix-store exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return proc.stdout.split()


def build_outputs(out_paths: str, drv_path: str, settings: Settings, deadline: float,
                  env: Mapping[str, str]) -> list[str]:
    """The valid store paths this build produced; invalid ones are logged and dropped."""
    candidates = out_paths.split()
    if not candidates and drv_path:
        if not storepath.is_derivation(drv_path, settings.store_dir):
            log(f"ignoring DRV_PATH {drv_path[:300]!r}: not a derivation in "
                f"{settings.store_dir}")
            return []
        candidates = drv_outputs(drv_path) or []
        if not candidates:
            try:
                candidates = query_outputs(drv_path, settings.nix_bin_dir, deadline, env)
            except Exception as exc:
                log(f"cannot resolve the outputs of {drv_path}: {exc}; nothing queued")
                return []
    valid = []
    for path in candidates:
        why = storepath.problem(path, settings.store_dir)
        if why is None:
            valid.append(path)
        else:
            log(f"refusing {path[:300]!r}: {why}")
    return list(dict.fromkeys(valid))


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
    """Queue this build's outputs. Returns what happened: "sent", "spooled", "nothing" or
    "lost" (the spool failed too; logged). Raises only on bugs; the CLI catches those."""
    deadline = time.monotonic() + settings.timeout
    paths = build_outputs(out_paths, drv_path, settings, deadline, env)
    if not paths:
        return "nothing"
    if settings.roots_dir is not None:
        # Before the daemon or the spool sees them, and before Nix goes on: from here until
        # every target has them, no garbage collection can delete them.
        root_paths(settings.roots_dir, paths, env)
    drv = drv_path if storepath.is_derivation(drv_path, settings.store_dir) else None
    chunks = framing.enqueue_lines(paths, drv, "hook")
    try:
        acked, why = send(settings.socket, [line for _, line in chunks], deadline)
    except Exception as exc:  # a bug must not lose the paths: spool them
        acked, why = 0, f"unexpected {type(exc).__name__}: {exc}"
    if why is None:
        return "sent"
    unsent = [p for chunk, _ in chunks[acked:] for p in chunk]
    return spool_paths(settings.spool_dir, unsent, why)


def root_paths(roots_dir: str, paths: Sequence[str], env: Mapping[str, str]) -> int:
    """Make each path a GC root; returns how many are rooted. A failure is logged (the path
    is still queued, only unprotected from a collection) and never fails the build."""
    rooted, problem = 0, None
    for path in paths:
        try:
            try:
                gcroots.add_root(roots_dir, path)
            except FileNotFoundError:
                gcroots.ensure_dir(roots_dir)
                gcroots.add_root(roots_dir, path)
            rooted += 1
        except OSError as exc:
            problem = exc.strerror or str(exc)
    if problem is not None:
        log(f"cannot make {len(paths) - rooted} path(s) GC roots in {roots_dir}: {problem}; "
            "they are queued, but a garbage collection may delete them before their upload")
    state = env.get("NIX_STATE_DIR")
    if state and gcroots.roots_dir(state) != roots_dir:
        log(f"NIX_STATE_DIR is {state} but the roots go to {roots_dir}: set nix.state_dir "
            "in the config to the state directory of this Nix")
    return rooted


def spool_paths(spool_dir: str, paths: Sequence[str], why: str) -> str:
    try:
        file = spool.write_spool(spool_dir, paths)
    except Exception as exc:
        log(f"{why}; and the spool failed too, {len(paths)} path(s) NOT queued: {exc}")
        for path in paths:
            log(f"not queued: {path} (push it later with `nix-push-queue push`)")
        return "lost"
    log(f"{why}; spooled {len(paths)} path(s) to {file}")
    return "spooled"
