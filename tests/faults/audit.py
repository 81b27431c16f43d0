"""What the fault scenarios share: making many store paths, running real hooks, and the
final audit (queue database read-only, `status --json`, the cache's narinfos) that turns a
scenario into a figures row: nothing enqueued may end up neither uploaded nor dead-lettered.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from nix_push_queue.config import load_document
from nix_push_queue.generate import hook_wrapper
from nix_push_queue.nix.isolated import IsolatedNix
from tests.fixtures.daemon import NPQ, DaemonHarness

from .figures import Row
from .strategies import is_store_path

ADD_BATCH = 1000  # files per `nix-store --add` call


def add_paths(nix: IsolatedNix, workdir: Path, count: int, tag: str = "") -> list[str]:
    """`count` fresh, valid store paths: small files added with `nix-store --add`."""
    tag = tag or secrets.token_hex(4)
    src = workdir / f"files-{tag}"
    src.mkdir(parents=True)
    files = []
    for i in range(count):
        f = src / f"f{tag}-{i}"
        f.write_text(f"{tag} {i}\n", "utf-8")
        files.append(str(f))
    paths: list[str] = []
    for k in range(0, count, ADD_BATCH):
        paths += nix.run(["nix-store", "--add", *files[k:k + ADD_BATCH]]).stdout.split()
    assert len(set(paths)) == count, "nix-store --add returned fewer paths than files"
    return paths


@dataclass(frozen=True)
class HookRun:
    paths: tuple[str, ...]
    returncode: int
    stderr: str
    seconds: float


# The two hooks every promise is proven for: the generated /bin/sh wrapper (what Nix runs:
# roots and spools itself) and the Python `nix-push-queue hook` (socket, then spool).
HOOKS = ("shell", "python")


def shell_hook(d: DaemonHarness, timeout: float = 10) -> Path:
    """The generated post-build-hook wrapper for `d`'s config (its fallback: the real CLI)."""
    wrapper = d.root / f"post-build-hook-{timeout:g}"
    if not wrapper.exists():  # hooks run from several threads: renamed in whole
        config = {**d.config, "hook": {**d.config.get("hook", {}), "timeout": timeout}}
        temp = wrapper.with_name(f".{wrapper.name}.{secrets.token_hex(4)}")
        temp.write_text(hook_wrapper(load_document(config, "<test>"), [NPQ]), "utf-8")
        temp.chmod(0o755)
        temp.replace(wrapper)
    return wrapper


def hook_argv(d: DaemonHarness, timeout: float = 10, hook: str = "python") -> list[str]:
    if hook == "shell":
        return [str(shell_hook(d, timeout))]
    q, store = d.config["queue"], d.config["nix"]["store_dir"]
    return [NPQ, "hook", "--socket", q["socket"], "--spool-dir", q["spool_dir"],
            "--store-dir", store, "--state-dir", str(d.nix.state_dir), "--timeout", str(timeout)]


def run_hook(d: DaemonHarness, paths: Sequence[str], *, timeout: float = 10,
             argv: Sequence[str] | None = None, hook: str = "python") -> HookRun:
    """One real `nix-push-queue hook` process, as Nix runs it (OUT_PATHS, DRV_PATH)."""
    env = d.env()
    env.update(OUT_PATHS=" ".join(paths), DRV_PATH="")
    started = time.monotonic()
    proc = subprocess.run(list(argv or hook_argv(d, timeout, hook)), env=env, capture_output=True,
                          text=True, timeout=timeout + 120, check=False)
    return HookRun(tuple(paths), proc.returncode, proc.stderr, time.monotonic() - started)


def run_hooks(d: DaemonHarness, groups: Sequence[Sequence[str]], concurrency: int,
              *, timeout: float = 10, hook: str = "python") -> list[HookRun]:
    """One hook per group of paths, `concurrency` at a time."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda g: run_hook(d, g, timeout=timeout, hook=hook), groups))


def chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[k:k + size]) for k in range(0, len(items), size)]


# ------------------------------------------------------------------ the audit


@dataclass(frozen=True)
class DbRow:
    path: str
    target: str
    state: str
    attempts: int
    last_error: str | None


def db_rows(state_dir: Path) -> list[DbRow]:
    """Every queue row, read through a read-only connection (the daemon may be running)."""
    db = state_dir / "queue.sqlite"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    try:
        rows = conn.execute(
            "SELECT path, target, state, attempts, last_error FROM jobs").fetchall()
    finally:
        conn.close()
    return [DbRow(*row) for row in rows]


def cached_paths(cache_dir: Path, key_name: str | None) -> set[str]:
    """Store paths with a narinfo in a binary cache directory, signed by `key_name` if given."""
    found = set()
    for narinfo in cache_dir.glob("*.narinfo"):
        text = narinfo.read_text("utf-8", "replace")
        fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
        if key_name is not None and f"Sig: {key_name}:" not in text:
            continue
        # A narinfo must name its NAR, and the NAR must be there: a torn upload is no upload.
        if "StorePath" in fields and (cache_dir / fields.get("URL", "-")).is_file():
            found.add(fields["StorePath"])
    return found


@dataclass(frozen=True)
class Outcome:
    uploaded: frozenset[str]
    dead: dict[str, str]      # path -> reason
    lost: frozenset[str]
    duplicated: int
    foreign: frozenset[str]   # queue rows that are not valid store paths: must be empty
    status: dict[str, dict[str, object]]


def audit(d: DaemonHarness, enqueued: Iterable[str], *, target: str = "local",
          cache_dir: Path | None = None, public_key: str | None = None) -> Outcome:
    """Where every enqueued path ended up. Needs the daemon running (for `status`)."""
    wanted = set(enqueued)
    rows = db_rows(d.state_dir)
    store = d.config["nix"]["store_dir"]
    key_name = (public_key or d.public_key).split(":", 1)[0]
    uploaded = cached_paths(cache_dir or d.cache_dir, key_name) & wanted
    dead = {r.path: r.last_error or "" for r in rows
            if r.target == target and r.state == "dead" and r.path in wanted}
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r.path, r.target)] = counts.get((r.path, r.target), 0) + 1
    duplicated = sum(n - 1 for n in counts.values())
    foreign = frozenset(r.path for r in rows if not is_store_path(store, r.path))
    status = d.status()
    return Outcome(frozenset(uploaded), dead, frozenset(wanted - uploaded - set(dead)),
                   duplicated, foreign, status)


def row(scenario: str, outcome: Outcome, *, faults: int, enqueued: int,
        seconds: float) -> Row:
    return Row(scenario, faults, enqueued, len(outcome.uploaded), len(outcome.dead),
               len(outcome.lost), outcome.duplicated, seconds)


def check(outcome: Outcome, *, allow_dead: bool = False) -> None:
    """The invariants every scenario ends with."""
    assert not outcome.lost, f"{len(outcome.lost)} path(s) lost, e.g. {sorted(outcome.lost)[:3]}"
    assert outcome.duplicated == 0
    assert not outcome.foreign, f"invalid paths in the queue: {sorted(outcome.foreign)[:3]}"
    for path, reason in outcome.dead.items():
        assert reason.strip(), f"dead letter without a reason: {path}"
    if not allow_dead:
        assert not outcome.dead, f"unexpected dead letters: {list(outcome.dead.items())[:3]}"


def dump(outcome: Outcome) -> str:
    return json.dumps(outcome.status, indent=1, default=str)


@dataclass(frozen=True)
class Feed:
    """What a batch of hook runs did with its paths."""

    queued: tuple[str, ...]      # acknowledged by the daemon or spooled: the queue owns them
    refused: tuple[str, ...]     # the hook said "NOT queued" (and why): nobody owns them
    runs: tuple[HookRun, ...]

    @property
    def spooled(self) -> int:
        """Python hook runs that spooled (the shell hook always does, and says nothing)."""
        return sum(1 for r in self.runs if "spooled" in r.stderr)


def feed(d: DaemonHarness, paths: Sequence[str], *, concurrency: int = 4, per_hook: int = 1,
         timeout: float = 10, hook: str = "python") -> Feed:
    """Real hooks for `paths`; every one must exit 0 whatever the daemon or disk does."""
    runs = run_hooks(d, chunks(paths, per_hook), concurrency, timeout=timeout, hook=hook)
    queued: list[str] = []
    refused: list[str] = []
    for run in runs:
        assert run.returncode == 0, f"hook exited {run.returncode}: {run.stderr}"
        (refused if "NOT queued" in run.stderr else queued).extend(run.paths)
    return Feed(tuple(queued), tuple(refused), tuple(runs))


def use_cache(d: DaemonHarness, url: str) -> None:
    """Point the harness's one target at another cache (same signing key); before start()."""
    d.config["targets"][0]["url"] = url
