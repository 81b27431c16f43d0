"""Typed, frozen view of a validated config. Built only from a defaults-filled document,
so no field here has a default of its own: defaults live in the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

Scheme = Literal["file", "http", "https", "s3", "ssh", "ssh-ng"]
LogLevel = Literal["debug", "info", "warning", "error"]
TransportSetting = Literal["auto", "nix", "boto3"]
BINARY_CACHE_SCHEMES: frozenset[str] = frozenset({"file", "http", "https", "s3"})


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    secret_key_file: str | None
    public_key: str | None
    ssh_key_file: str | None
    credentials_file: str | None
    compression: str | None  # used only by binary caches (daemon/storeurl.py)
    compression_level: int | None  # None: the method's own default
    parallel_compression: bool
    options: tuple[tuple[str, str], ...]
    substitute: bool
    priority: int | None
    transport: TransportSetting
    environment_file: str | None

    @property
    def scheme(self) -> Scheme:
        return urlsplit(self.url).scheme  # type: ignore[return-value]

    @property
    def is_binary_cache(self) -> bool:
        """Binary caches sign at upload with `?secret-key=`; other stores need `nix store sign`."""
        return self.scheme in BINARY_CACHE_SCHEMES

    @property
    def key_name(self) -> str | None:
        return self.public_key.split(":", 1)[0] if self.public_key else None


@dataclass(frozen=True)
class Substituters:
    urls: tuple[str, ...]
    trusted_public_keys: tuple[str, ...]
    keep_defaults: bool


@dataclass(frozen=True)
class NixSettings:
    store_dir: str
    secret_key_files: tuple[str, ...]
    nix_bin_dir: str | None
    state_dir: str

    @property
    def gc_roots_dir(self) -> str:
        """Where queued paths are rooted (wire/gcroots.py)."""
        return self.state_dir.rstrip("/") + "/gcroots/nix-push-queue"


@dataclass(frozen=True)
class GcRoots:
    enable: bool
    max_bytes: int | None
    max_age: float | None


@dataclass(frozen=True)
class Retry:
    max_attempts: int
    initial_delay: float
    max_delay: float
    jitter: float


@dataclass(frozen=True)
class Queue:
    socket: str
    socket_mode: int
    socket_group: str | None
    state_dir: str
    spool_dir: str
    workers: int
    reserved_cpus: int
    batch_size: int
    batch_wait: float
    build_batch_wait: float
    upload_timeout: float
    stop_grace: float
    retry: Retry
    gc_roots: GcRoots
    staging_max_bytes: int


@dataclass(frozen=True)
class Filters:
    exclude: tuple[str, ...]
    skip_signed_by: tuple[str, ...]


@dataclass(frozen=True)
class Hook:
    enable: bool
    timeout: float


@dataclass(frozen=True)
class Metrics:
    listen: str | None


@dataclass(frozen=True)
class Service:
    user: str | None
    group: str | None
    supplementary_groups: tuple[str, ...]
    log_level: LogLevel
    aws_config_file: str | None
    aws_shared_credentials_file: str | None


@dataclass(frozen=True)
class Config:
    """A complete, validated configuration. `document` is the defaults-filled JSON form,
    which is what the daemon's own config file holds."""

    version: int
    targets: tuple[Target, ...]
    substituters: Substituters
    nix: NixSettings
    queue: Queue
    filters: Filters
    hook: Hook
    metrics: Metrics
    service: Service
    document: dict[str, Any]

    def target(self, name: str) -> Target:
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)


def _target(d: dict[str, Any]) -> Target:
    return Target(
        name=d["name"],
        url=d["url"],
        secret_key_file=d.get("secret_key_file"),
        public_key=d.get("public_key"),
        ssh_key_file=d.get("ssh_key_file"),
        credentials_file=d.get("credentials_file"),
        compression=d.get("compression"),
        compression_level=d.get("compression_level"),
        parallel_compression=d["parallel_compression"],
        options=tuple((k, _option_text(v)) for k, v in sorted(d["options"].items())),
        substitute=d["substitute"],
        priority=d.get("priority"),
        transport=d["transport"],
        environment_file=d.get("environment_file"),
    )


def _gc_roots(d: dict[str, Any]) -> GcRoots:
    age = d["max_age"]
    return GcRoots(enable=d["enable"], max_bytes=d["max_bytes"],
                   max_age=None if age is None else float(age))


def _option_text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def from_document(d: dict[str, Any]) -> Config:
    """Build the typed view. `d` must be schema-valid and defaults-filled."""
    q, r = d["queue"], d["queue"]["retry"]
    return Config(
        version=d["version"],
        targets=tuple(_target(t) for t in d["targets"]),
        substituters=Substituters(
            urls=tuple(d["substituters"]["urls"]),
            trusted_public_keys=tuple(d["substituters"]["trusted_public_keys"]),
            keep_defaults=d["substituters"]["keep_defaults"],
        ),
        nix=NixSettings(
            store_dir=d["nix"]["store_dir"].rstrip("/") or "/",
            secret_key_files=tuple(d["nix"]["secret_key_files"]),
            nix_bin_dir=d["nix"]["nix_bin_dir"],
            state_dir=d["nix"]["state_dir"].rstrip("/") or "/",
        ),
        queue=Queue(
            socket=q["socket"],
            socket_mode=int(q["socket_mode"], 8),
            socket_group=q["socket_group"],
            state_dir=q["state_dir"],
            spool_dir=q["spool_dir"],
            workers=q["workers"],
            reserved_cpus=q["reserved_cpus"],
            batch_size=q["batch_size"],
            batch_wait=float(q["batch_wait"]),
            build_batch_wait=float(q["build_batch_wait"]),
            upload_timeout=float(q["upload_timeout"]),
            stop_grace=float(q["stop_grace"]),
            retry=Retry(
                max_attempts=r["max_attempts"],
                initial_delay=float(r["initial_delay"]),
                max_delay=float(r["max_delay"]),
                jitter=float(r["jitter"]),
            ),
            gc_roots=_gc_roots(q["gc_roots"]),
            staging_max_bytes=q["staging_max_bytes"],
        ),
        filters=Filters(
            exclude=tuple(d["filters"]["exclude"]),
            skip_signed_by=tuple(d["filters"]["skip_signed_by"]),
        ),
        hook=Hook(enable=d["hook"]["enable"], timeout=float(d["hook"]["timeout"])),
        metrics=Metrics(listen=d["metrics"]["listen"]),
        service=Service(
            user=d["service"]["user"],
            group=d["service"]["group"],
            supplementary_groups=tuple(d["service"]["supplementary_groups"]),
            log_level=d["service"]["log_level"],
            aws_config_file=d["service"].get("aws_config_file"),
            aws_shared_credentials_file=d["service"].get("aws_shared_credentials_file"),
        ),
        document=d,
    )
