"""The hook's settings (flags over the daemon's config.json over the schema's defaults) and
its one log function. On the hook's path: the standard library's cheapest modules only (see
hook.py).
"""

from __future__ import annotations

import os
import sys

from ..wire import framing, gcroots

TYPE_CHECKING = False  # mypy reads this name as true; at run time `typing` stays unloaded
if TYPE_CHECKING:
    from collections.abc import Mapping

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
