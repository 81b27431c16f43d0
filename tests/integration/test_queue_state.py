"""What the queue believes stays true, against the real daemon, real Nix and file:// caches
(issue 22): a second daemon on the same state directory, a target removed from the config,
a spool file that cannot be deleted, a start-up ingestion that failed."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from nix_push_queue.wire.spool import write_spool
from tests.fixtures.daemon import NPQ, DaemonHarness
from tests.fixtures.faults import fill_disk, mount_tmpfs, needs_root
from tests.fixtures.nginx import NginxCache
from tests.integration.test_daemon_faults import wait_for
from tests.integration.test_upload_slots import counting_nix

pytestmark = pytest.mark.integration

Factory = Callable[..., DaemonHarness]
# A target whose uploads fail: nothing listens there (connection refused, a transient error).
UNREACHABLE = "http://127.0.0.1:9/cache"


def root_of(d: DaemonHarness, path: Path) -> Path:
    return d.nix.state_dir / "gcroots" / "nix-push-queue" / path.name


def test_a_second_daemon_on_the_state_dir_touches_nothing(npq_daemon_factory: Factory,
                                                          tmp_path: Path) -> None:
    bindir, copies = counting_nix(tmp_path)  # each nix copy takes a second longer
    d = npq_daemon_factory(hook=False, nix={"nix_bin_dir": str(bindir)},
                           queue={"workers": 1, "batch_size": 1, "batch_wait": 0})
    paths = d.build_many("second", 3, uuid.uuid4().hex)
    d.start()
    d.cli("push", *map(str, paths))
    wait_for(lambda: "inflight" in {s for s, _ in d.rows().values()}, what="an upload")
    # The second daemon: same config (state dir), its own socket so that only the lock
    # can stop it.
    second = dict(d.config, queue=dict(d.config["queue"], socket=d.socket_path + "2"))
    (d.root / "second.json").write_text(json.dumps(second), "utf-8")
    run = subprocess.run([NPQ, "daemon", "--config", str(d.root / "second.json")],
                         env=d.env(), capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 12, run.stderr
    assert "another nix-push-queue daemon" in run.stderr
    assert "recovered" not in run.stderr and "ingested" not in run.stderr
    assert "inflight" in {s for s, _ in d.rows().values()}  # not reset under the first
    d.wait_drained(timeout=120)
    assert {s for s, _ in d.rows().values()} == {"done"}
    assert len(copies.read_text().split()) == 3  # each path copied once


def test_a_removed_target_is_orphaned_not_waited_for(npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(hook=False)
    d.config["targets"].append({"name": "old", "url": UNREACHABLE})
    path = d.build("orphan", uuid.uuid4().hex)
    d.start()
    d.cli("push", str(path))
    wait_for(lambda: d.narinfo(path).exists() and d.status()["local"]["done"] == 1,
             what="the upload to local")
    assert root_of(d, path).is_symlink()  # still queued for "old"
    d.stop()
    d.config["targets"] = d.config["targets"][:1]  # "old" leaves the config
    d.start()
    status = d.status()
    assert status["old"]["orphaned"] and status["old"]["pending"] == 1
    assert not status["local"]["orphaned"]
    assert "orphaned old" in d.cli("status").stdout
    waited = d.cli("wait", "--timeout", "20", check=False)
    assert waited.returncode == 0, waited.stderr
    # Every configured target has the path: its root goes (main kept it for 3 days).
    wait_for(lambda: not root_of(d, path).is_symlink(), timeout=30, what="root released")
    assert "1 row(s)" in d.cli("drop", "--orphaned").stdout
    assert "old" not in d.status()


def test_a_spool_file_that_cannot_be_deleted_blocks_no_other(npq_daemon_factory: Factory,
                                                            tmp_path: Path) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("needs chattr (e2fsprogs)")
    d = npq_daemon_factory(hook=False)
    nonce = uuid.uuid4().hex
    stuck_path, *later_paths = d.build_many("undeletable", 3, nonce)
    d.spool_dir.mkdir(parents=True, exist_ok=True)
    stuck = Path(write_spool(d.spool_dir, [str(stuck_path)]))
    if subprocess.run(["chattr", "+i", str(stuck)], check=False).returncode != 0:
        pytest.skip("chattr +i does not work here (needs root on ext4/xfs/btrfs)")
    try:
        d.start()
        for path in later_paths:
            time.sleep(0.05)
            write_spool(d.spool_dir, [str(path)])
        waited = d.cli("wait", "--timeout", "60", check=False)
        assert waited.returncode == 0, waited.stderr + d.log_text()[-3000:]
        assert all(d.narinfo(p).exists() for p in (stuck_path, *later_paths))
        assert "cannot be deleted" in d.log_text()
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=False)


@needs_root
def test_a_failed_start_up_ingestion_is_retried_at_the_next_poll(
        npq_daemon_factory: Factory, tmp_path: Path) -> None:
    """docs/faults.md: retried at the next poll (1 s); main waited for SPOOL_FORCE (60 s)."""
    with mount_tmpfs(tmp_path / "statefs", 4096) as fs:
        d = npq_daemon_factory(hook=False, queue={"state_dir": str(fs / "state")})
        path = d.build("startup", uuid.uuid4().hex)
        d.start()
        d.kill()  # leaves the WAL behind, so the queue opens on the full disk
        filler = fill_disk(fs)
        d.spool_dir.mkdir(parents=True, exist_ok=True)
        write_spool(d.spool_dir, [str(path)])
        d.start()
        wait_for(lambda: "spool ingestion failed" in d.log_text(), timeout=30,
                 what="the failed start-up ingestion")
        filler.unlink()
        freed = time.monotonic()
        wait_for(lambda: d.narinfo(path).exists(), timeout=50, what="the spooled path")
        print(f"measured: spooled path uploaded {time.monotonic() - freed:.1f} s after the "
              "disk had room again")
        assert time.monotonic() - freed < 20


def test_push_answers_from_the_cache_not_the_row(npq_daemon_factory: Factory) -> None:
    """A cache that lost a path (its GC, a recreated directory): `push --wait` uploads it
    again instead of reporting it on every target; `push --force` uploads regardless.
    main: "queued 0 ... 1 path(s) on every target", exit 0, narinfo still missing."""
    d = npq_daemon_factory(hook=False)
    path = d.build("lost-by-cache", uuid.uuid4().hex)
    d.start()
    d.cli("push", "--wait", "--timeout", "60", str(path))
    assert d.narinfo(path).exists()
    uploads = d.log_text().count("uploaded 1 path(s)")
    present = d.cli("push", "--wait", "--timeout", "60", str(path))
    assert "queued 0" in present.stdout  # the cache has it: one lookup, nothing queued
    d.narinfo(path).unlink()  # the cache loses it
    again = d.cli("push", "--wait", "--timeout", "60", str(path))
    assert "queued 1" in again.stdout, again.stdout
    assert "1 path(s) on every target" in again.stdout
    assert d.narinfo(path).exists()
    assert "the cache lacks them" in d.log_text()
    d.assert_substitutable(path)
    forced = d.cli("push", "--force", "--wait", "--timeout", "60", str(path))
    assert "queued 1" in forced.stdout, forced.stdout
    assert d.log_text().count("uploaded 1 path(s)") == uploads + 2


def test_a_rebuild_uploads_again_what_the_cache_lost(npq_daemon_factory: Factory) -> None:
    """The same through the hook: the cache lost a path the queue once uploaded, the path
    leaves the local store and is built again; the hook's entry meets a done row, and the
    daemon asks the cache instead of trusting the row. Before: never uploaded again."""
    d = npq_daemon_factory()
    d.start()
    content = uuid.uuid4().hex
    path = d.build("rebuilt", content)
    wait_for(lambda: d.narinfo(path).exists(), timeout=60, what="the first upload")
    d.wait_drained(timeout=60)  # its root released: the path may leave the store
    d.narinfo(path).unlink()  # the cache loses it
    d.nix.run(["nix-store", "--delete", str(path)])
    assert d.build("rebuilt", content) == path  # built again: the hook runs again
    wait_for(lambda: d.narinfo(path).exists(), timeout=60, what="the upload after the rebuild")
    assert "the cache lacks them" in d.log_text()
    d.assert_substitutable(path)


def test_push_uploads_again_what_an_http_cache_lost(npq_daemon_factory: Factory,
                                                    nginx_cache: NginxCache) -> None:
    """The same over HTTP (nginx): the lookup is a HEAD of the narinfo, and `nix copy` must
    not trust Nix's own narinfo cache, which remembers the path as present."""
    d = npq_daemon_factory(hook=False, cache=(nginx_cache.url, nginx_cache.cache_dir))
    path = d.build("lost-by-http-cache", uuid.uuid4().hex)
    d.start()
    d.cli("push", "--wait", "--timeout", "60", str(path))
    assert d.narinfo(path).exists()
    d.narinfo(path).unlink()
    again = d.cli("push", "--wait", "--timeout", "60", str(path))
    assert "queued 1" in again.stdout, again.stdout
    assert d.narinfo(path).exists(), d.log_text()[-2000:]
