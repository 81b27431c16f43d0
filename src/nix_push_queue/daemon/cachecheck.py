"""Does a target still have a path? Asked when a path whose row says `done` is queued again
(`push`, or the hook after a rebuild).

A `done` row records an upload in the past, not a promise about the present: a cache may
lose a path (its GC, a recreated bucket or directory, `nix-collect-garbage` on an ssh-ng
remote), and the queue must then upload it again rather than report it on every target
(issue 22). One lookup per such path:

- `file://DIR`: whether `DIR/<hash>.narinfo` exists;
- `http(s)://`: a HEAD of `<url>/<hash>.narinfo` (200: present, 404/403/410: absent);
- s3 targets of the boto3 transport: a HEAD of the narinfo, signed by boto3 (daemon/s3/);
- any other store (ssh, ssh-ng, s3): `nix path-info --store URL PATH`, which exits 0 only
  when the store has the path (narinfo caches off, so the answer is fresh).

Anything that is not a confirmed presence (the cache is down, the lookup timed out) counts
as absent: uploading again costs a `nix copy`; trusting a stale row loses the path.
"""

from __future__ import annotations

import logging
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..config.model import Config, Target
from ..nix import runner
from ..nix.storepath import narinfo_name
from .storeurl import TargetKeys, store_url

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT = 10.0  # seconds per lookup

Present = Callable[[Target, str], bool]


def file_has(target: Target, path: str) -> bool:
    directory = unquote(urlsplit(target.url).path)
    return os.path.isfile(os.path.join(directory, narinfo_name(path)))


def http_has(target: Target, path: str) -> bool:
    parts = urlsplit(target.url)
    url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/{narinfo_name(path)}"
    # Only http(s) targets come here (CacheCheck picks by scheme).
    request = urllib.request.Request(url, method="HEAD")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=LOOKUP_TIMEOUT) as reply:  # noqa: S310
            return bool(reply.status == 200)
    except urllib.error.HTTPError as exc:
        if exc.code not in (403, 404, 410):
            log.warning("target %s: looking up %s answered HTTP %d; uploading it again",
                        target.name, url, exc.code)
        return False
    except (OSError, ValueError) as exc:
        log.warning("target %s: cannot look up %s (%s); uploading it again", target.name, url,
                    exc)
        return False


@dataclass(frozen=True)
class NixPathInfo:
    """`nix path-info --store URL PATH` for stores that are not plain files or HTTP."""

    nix_bin_dir: str | None
    env: Mapping[str, str]
    store_url: Callable[[Target], str]

    def __call__(self, target: Target, path: str) -> bool:
        argv = runner.nix_argv(self.nix_bin_dir, "path-info", "--store",
                               self.store_url(target), "--option",
                               "narinfo-cache-negative-ttl", "0", "--option",
                               "narinfo-cache-positive-ttl", "0", path)
        try:
            run = subprocess.run(argv, env=dict(self.env), capture_output=True, text=True,
                                 timeout=LOOKUP_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("target %s: cannot look up %s (%s); uploading it again", target.name,
                        path, exc)
            return False
        return run.returncode == 0


@dataclass(frozen=True)
class CacheCheck:
    """Which of `paths` a target lacks, by its kind of store (see the module docstring)."""

    targets: Mapping[str, Target]
    other: Present
    # Targets asked another way: s3 targets of the boto3 transport, whose bucket this Nix
    # may not read (daemon/s3/bucket.py's HEAD of the narinfo).
    own: Mapping[str, Present] = field(default_factory=dict)

    def lacking(self, target: str, paths: Sequence[str]) -> list[str]:
        config = self.targets.get(target)
        if config is None:
            return []
        by_scheme: dict[str, Present] = {"file": file_has, "http": http_has,
                                         "https": http_has}
        has = self.own.get(target, by_scheme.get(config.scheme, self.other))
        return [p for p in paths if not has(config, p)]


def for_config(config: Config, env: Mapping[str, str], keys: Mapping[str, TargetKeys],
               own: Mapping[str, Present] | None = None) -> CacheCheck:
    """The daemon's check: its targets, its Nix, its keys (ssh stores need theirs); `own`:
    targets looked up their own way (the boto3 S3 transport's bucket)."""
    return CacheCheck({t.name: t for t in config.targets},
                      NixPathInfo(config.nix.nix_bin_dir, env,
                                  lambda t: store_url(t, keys[t.name])), dict(own or {}))
