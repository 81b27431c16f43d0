"""Checks JSON Schema cannot express: relations between fields, and facts on disk."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..nix.stores import S3Support
from . import paths
from .redact import excerpt_read
from .source import FieldPath

# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107

Finding = tuple[FieldPath, str]


def check(doc: dict[str, Any]) -> list[Finding]:
    """Return (field path, message) for every rule broken. `doc` is schema-valid, filled, and
    its paths normalized (`paths.normalized`)."""
    return [
        *_dotdot(doc),
        *_file_urls(doc),
        *_duplicate_targets(doc),
        *_store_secrets(doc),
        *_key_names(doc),
        *_substituted_targets(doc),
        *_scheme_fields(doc),
        *_queue(doc),
        *_metrics(doc),
    ]


def _dotdot(doc: dict[str, Any]) -> Iterator[Finding]:
    for field, kind, value in paths.fields(doc):
        path = value if kind == "path" else paths.file_url_path(value)
        if path is not None and paths.has_dotdot(path):
            yield field, ("has a '..' component; write the directory it stands for (behind a "
                          "symlink '..' leads elsewhere than it reads)")


def _file_urls(doc: dict[str, Any]) -> Iterator[Finding]:
    for field, kind, value in paths.fields(doc):
        if kind != "url" or not value.startswith("file:"):
            continue
        host = value.removeprefix("file://").split("/", 1)[0]
        if host:
            yield field, (f"a file:// URL takes no host ({host!r} here): a local cache is "
                          f"file:///ABSOLUTE/PATH, with three slashes")
        elif paths.file_url_path(value) in ("/", ""):
            yield field, "a file:// cache needs its own directory, not /"


def _duplicate_targets(doc: dict[str, Any]) -> Iterator[Finding]:
    names: dict[str, int] = {}
    urls: dict[str, int] = {}
    for i, target in enumerate(doc["targets"]):
        if target["name"] in names:
            first = names[target["name"]]
            yield (("targets", i, "name"),
                   f"duplicate target name {target['name']!r} (also targets[{first}]); "
                   "give each target its own name")
        names.setdefault(target["name"], i)
        url = target["url"].rstrip("/")
        if url in urls:
            yield (("targets", i, "url"),
                   f"duplicate target URL (also targets[{urls[url]}]); remove one of them")
        urls.setdefault(url, i)


def _secret_fields(doc: dict[str, Any]) -> Iterator[tuple[FieldPath, str]]:
    for i, target in enumerate(doc["targets"]):
        for key in ("secret_key_file", "ssh_key_file", "credentials_file"):
            if isinstance(target.get(key), str):
                yield ("targets", i, key), target[key]
    for i, path in enumerate(doc["nix"]["secret_key_files"]):
        yield ("nix", "secret_key_files", i), path


def _store_secrets(doc: dict[str, Any]) -> Iterator[Finding]:
    store = doc["nix"]["store_dir"].rstrip("/") + "/"
    for field, path in _secret_fields(doc):
        # Also a link into the store, e.g. /etc/nix/key -> /nix/store/...-key.
        if path.startswith(store) or os.path.realpath(path).startswith(store):
            yield field, (f"secret file is inside the Nix store ({store}), which every user "
                          "can read; keep it outside, e.g. /etc/nix/cache-priv-key.pem")


def _secret_key_name(path: str) -> str | None:
    """Name part of a Nix secret key file, or None when it cannot be read here (a config may
    be generated on another machine than the one holding the key). Only the name is kept."""
    try:
        with open(path, encoding="utf-8") as handle:
            head = handle.read(512)
    except (OSError, UnicodeDecodeError):
        return None
    name, sep, _ = head.strip().partition(":")
    return name if sep else None


def _key_names(doc: dict[str, Any]) -> Iterator[Finding]:
    for i, target in enumerate(doc["targets"]):
        public, secret = target.get("public_key"), target.get("secret_key_file")
        if not (isinstance(public, str) and isinstance(secret, str)):
            continue
        secret_name = _secret_key_name(secret)
        public_name = public.split(":", 1)[0]
        if secret_name is not None and secret_name != public_name:
            yield (("targets", i, "public_key"),
                   f"key name {public_name!r} does not match the secret key's name "
                   f"{excerpt_read(secret_name)} in {secret}; use the public key made with "
                   "that secret key (`nix key convert-secret-to-public < KEYFILE`)")


def _substituted_targets(doc: dict[str, Any]) -> Iterator[Finding]:
    for i, target in enumerate(doc["targets"]):
        if target["substitute"] and "public_key" not in target:
            yield (("targets", i, "substitute"),
                   "a target used as a substituter needs `public_key`, or Nix will refuse "
                   "its unsigned-for-us paths; add the target's public key")


# Target fields that only mean something for some URL schemes, and what to say otherwise.
_SCHEME_FIELDS: dict[str, tuple[frozenset[str], str]] = {
    "ssh_key_file": (frozenset({"ssh", "ssh-ng"}), "only ssh:// and ssh-ng:// targets use it"),
    "credentials_file": (frozenset({"s3"}), "only s3:// targets use it"),
    "compression": (frozenset({"file", "http", "https", "s3"}),
                    "only binary caches (file://, http(s)://, s3://) compress NARs"),
}


def _scheme_fields(doc: dict[str, Any]) -> Iterator[Finding]:
    for i, target in enumerate(doc["targets"]):
        scheme = target["url"].split("://", 1)[0]
        for key, (schemes, why) in _SCHEME_FIELDS.items():
            if key in target and scheme not in schemes:
                yield (("targets", i, key),
                       f"{key} has no effect on a {scheme}:// target: {why}; remove it")
        if "priority" in target and not target["substitute"]:
            yield (("targets", i, "priority"),
                   "priority only applies to substituters; set `substitute: true` or remove it")


def _queue(doc: dict[str, Any]) -> Iterator[Finding]:
    queue = doc["queue"]
    if len(queue["socket"].encode()) > MAX_SOCKET_PATH:
        yield (("queue", "socket"),
               f"socket path is longer than {MAX_SOCKET_PATH} bytes, the limit of a unix "
               "socket address; choose a shorter path")
    retry = queue["retry"]
    if retry["initial_delay"] > retry["max_delay"]:
        yield (("queue", "retry", "initial_delay"),
               "initial_delay is larger than max_delay; lower it or raise max_delay")
    if Path(queue["spool_dir"]) == Path(queue["state_dir"]):
        yield (("queue", "spool_dir"),
               "spool_dir must differ from state_dir; use a subdirectory such as STATE/spool")


def _metrics(doc: dict[str, Any]) -> Iterator[Finding]:
    listen = doc["metrics"]["listen"]
    if isinstance(listen, str):
        port = int(listen.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            yield (("metrics", "listen"), f"port {port} is out of range; use 1 to 65535")


def s3_warnings(doc: dict[str, Any], support: S3Support) -> list[Finding]:
    """What this host's Nix cannot do for the config's s3 targets. Warnings, not errors: a
    config may be written for another host, whose Nix has S3 (NixOS, nixos.org's)."""
    found: list[Finding] = []
    for i, target in enumerate(doc["targets"]):
        if not target["url"].startswith("s3://"):
            continue
        if not support.supported:
            found.append((("targets", i, "url"),
                          f"{support.reason()}: a daemon on this host would dead-letter this "
                          "target's paths; fine if the config is for a host whose Nix has S3"))
        elif support.signed is False and "credentials_file" in target:
            found.append((("targets", i, "credentials_file"),
                          f"{support.unsigned_reason()}; fine if the bucket takes anonymous "
                          "writes or the config is for another host"))
    return found

