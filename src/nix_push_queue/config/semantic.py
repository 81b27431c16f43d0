"""Checks JSON Schema cannot express: relations between fields, and facts on disk."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from ..nix.stores import S3Support
from . import paths
from .redact import excerpt_read
from .schema import load_schema
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
        *_compression(doc),
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
        for key in ("secret_key_file", "ssh_key_file", "credentials_file", "environment_file"):
            if isinstance(target.get(key), str):
                yield ("targets", i, key), target[key]
    for i, path in enumerate(doc["nix"]["secret_key_files"]):
        yield ("nix", "secret_key_files", i), path
    for key in ("aws_config_file", "aws_shared_credentials_file"):
        if isinstance(doc["service"].get(key), str):
            yield ("service", key), doc["service"][key]


def _store_secrets(doc: dict[str, Any]) -> Iterator[Finding]:
    store = doc["nix"]["store_dir"].rstrip("/") + "/"
    for field, path in _secret_fields(doc):
        # Also a link into the store, e.g. /etc/nix/key -> /nix/store/...-key.
        if path.startswith(store) or os.path.realpath(path).startswith(store):
            yield field, (f"secret file is inside the Nix store ({store}), which every user "
                          "can read; keep it outside, e.g. /etc/nix/cache-priv-key.pem")


KEY_NAME_MAX = 128


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


def _shown_key_name(name: str) -> str:
    """A key name in full: rotated keys differ only in a `-1`/`-2` suffix. Only what reads
    as a key name (Nix's are host-like: letters, digits, `.`, `-`, `_`) is shown whole; the
    head of anything else is cut, as for any value read from a file."""
    if len(name) <= KEY_NAME_MAX and all(c.isascii() and (c.isalnum() or c in "._-")
                                         for c in name):
        return repr(name)
    return excerpt_read(name)


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
                   f"{_shown_key_name(secret_name)} in {secret}; use the public key made with "
                   "that secret key (`nix key convert-secret-to-public < KEYFILE`)")


def _substituted_targets(doc: dict[str, Any]) -> Iterator[Finding]:
    for i, target in enumerate(doc["targets"]):
        if target["substitute"] and "public_key" not in target:
            yield (("targets", i, "substitute"),
                   "a target used as a substituter needs `public_key`, or Nix will refuse "
                   "its unsigned-for-us paths; add the target's public key")


BINARY_CACHES = frozenset({"file", "http", "https", "s3"})
_NO_NARS = "only binary caches (file://, http(s)://, s3://) compress NARs"
# Target fields that only mean something for some URL schemes, and what to say otherwise.
_SCHEME_FIELDS: dict[str, tuple[frozenset[str], str]] = {
    "ssh_key_file": (frozenset({"ssh", "ssh-ng"}), "only ssh:// and ssh-ng:// targets use it"),
    "credentials_file": (frozenset({"s3"}), "only s3:// targets use it"),
    "compression": (BINARY_CACHES, _NO_NARS),
    "compression_level": (BINARY_CACHES, _NO_NARS),
    "parallel_compression": (BINARY_CACHES, _NO_NARS),
    "environment_file": (frozenset({"s3"}), "only s3:// targets use it"),
}
# Levels each method takes, as measured on Nix 2.8/2.26/2.34 (libarchive): xz refuses
# 12 ("Undefined option: `xz:compression-level=12'"); br and none ignore any level.
LEVELS: dict[str, tuple[int, int]] = {"xz": (0, 9), "zstd": (1, 19), "bzip2": (1, 9)}
# Methods Nix compresses on several threads; bzip2 makes every upload fail ("Undefined
# option: `bzip2:threads=0'"), br and none ignore it.
PARALLEL = ("xz", "zstd")


def _schema_default(key: str) -> Any:
    return _target_schema()["properties"][key].get("default")


@cache
def _target_schema() -> dict[str, Any]:
    schema: dict[str, Any] = load_schema()["$defs"]["target"]
    return schema


def _scheme_fields(doc: dict[str, Any]) -> Iterator[Finding]:
    for i, target in enumerate(doc["targets"]):
        scheme = target["url"].split("://", 1)[0]
        for key, (schemes, why) in _SCHEME_FIELDS.items():
            # The schema fills compression's defaults into every target: only a value the
            # user changed is a mistake on a store that does not compress.
            if key in target and scheme not in schemes and target[key] != _schema_default(key):
                yield (("targets", i, key),
                       f"{key} has no effect on a {scheme}:// target: {why}; remove it")
        if target.get("transport") == "boto3" and scheme != "s3":
            yield (("targets", i, "transport"),
                   f"transport boto3 uploads to s3:// targets only; a {scheme}:// target is "
                   "uploaded by `nix copy`: use auto or nix")
        if "priority" in target and not target["substitute"]:
            yield (("targets", i, "priority"),
                   "priority only applies to substituters; set `substitute: true` or remove it")


def _compression(doc: dict[str, Any]) -> Iterator[Finding]:
    """Level and threads the method takes: Nix would fail every upload, or ignore them."""
    for i, target in enumerate(doc["targets"]):
        method, level = target.get("compression"), target.get("compression_level")
        if level is not None and method not in LEVELS:
            yield (("targets", i, "compression_level"),
                   f"compression {method} takes no level; remove compression_level or use "
                   "xz, zstd or bzip2")
        elif level is not None and not LEVELS[method][0] <= level <= LEVELS[method][1]:
            low, high = LEVELS[method]
            yield (("targets", i, "compression_level"),
                   f"{method} takes levels {low} to {high}, not {level}")
        if target.get("parallel_compression") and method not in PARALLEL:
            yield (("targets", i, "parallel_compression"),
                   f"Nix compresses only xz and zstd in parallel, not {method}; set "
                   "parallel_compression to false or use xz or zstd")


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


def s3_warnings(doc: dict[str, Any], support: S3Support | None, transports: Mapping[str, str],
                boto3_missing: str | None = None) -> list[Finding]:
    """What this host cannot do for the config's s3 targets, by the transport each uses
    (`transports`: target name -> "nix" or "boto3"). Warnings, not errors: a config may be
    written for another host (NixOS, whose package has boto3 and a Nix with S3)."""
    found: list[Finding] = []
    for i, target in enumerate(doc["targets"]):
        if not target["url"].startswith("s3://"):
            continue
        if transports.get(target["name"]) == "boto3":
            if boto3_missing:
                found.append((("targets", i, "transport"), f"{boto3_missing}: a daemon on "
                              "this host would dead-letter this target's paths"))
            continue
        if support is not None and not support.supported:
            found.append((("targets", i, "url"),
                          f"{support.reason()}: a daemon on this host would dead-letter this "
                          "target's paths; use `transport: boto3` (or auto), or this config "
                          "is for a host whose Nix has S3"))
        elif support is not None and support.signed is False and "credentials_file" in target:
            found.append((("targets", i, "credentials_file"),
                          f"{support.unsigned_reason()}; fine if the bucket takes anonymous "
                          "writes or the config is for another host; `transport: boto3` "
                          "signs with these credentials"))
    return found
