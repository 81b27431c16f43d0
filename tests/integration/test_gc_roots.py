"""A queued path survives the real garbage collector until every target has it
(docs/gc-roots.md): collections while the daemon is down, while the cache is down, and Nix's
own auto-GC (`min-free`) during a build loop; the cap releases exactly the oldest roots, and
every path lost is counted and fails `wait`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.nix.isolated import IsolatedNix, text_derivation
from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.gc import DownCache, collect, eventually, lost, root_names, status_totals

pytestmark = pytest.mark.integration

N = 6
# An outage outlasts the fixture's 8 quick attempts: keep retrying.
OUTAGE = {"retry": {"max_attempts": 1000}}


def content(d: DaemonHarness, prefix: str, i: int) -> str:
    return f"{prefix} {i} {d.root}"


def build(d: DaemonHarness, prefix: str, n: int = N) -> list[Path]:
    return [d.build(f"{prefix}-{i}", content(d, prefix, i)) for i in range(n)]


def assert_all_uploaded(d: DaemonHarness, paths: list[Path], prefix: str) -> None:
    """Drained with nothing lost, no root left, and every path substitutes back from the
    cache with its signature checked (deleted locally first, if a collection has not)."""
    d.wait_drained(timeout=120)
    totals = status_totals(d)
    assert (totals["gone"], totals["released"]) == (0, 0), totals
    assert not root_names(d.nix), "roots of uploaded paths are released before wait returns"
    present = [str(p) for p in paths if p.exists()]
    if present:
        d.nix.run(["nix-store", "--delete", *present])
    d.nix.run(["nix-store", "--realise", *map(str, paths), "--option", "substituters",
               d.cache_url, "--option", "trusted-public-keys", d.public_key,
               "--option", "require-sigs", "true"])
    assert [p.read_text() for p in paths] == [content(d, prefix, i) for i in range(len(paths))]


def test_gc_while_the_daemon_is_down(npq_daemon_factory: Any) -> None:
    d: DaemonHarness = npq_daemon_factory()
    paths = build(d, "down")  # no daemon: the hook spools, and roots every path first
    assert root_names(d.nix) == {p.name for p in paths}
    out = collect(d.nix)
    assert all(p.exists() for p in paths), out
    d.start()
    assert_all_uploaded(d, paths, "down")
    print(f"\ngc while the daemon is down: {len(paths)} queued, 0 lost")


def test_gc_while_the_cache_is_down(npq_daemon_factory: Any, down_cache: DownCache) -> None:
    d: DaemonHarness = npq_daemon_factory(cache=down_cache.spec, queue=OUTAGE)
    d.start()
    paths = build(d, "outage")
    eventually(lambda: "failed" in d.log_text(), what="uploads failing")
    for _ in range(2):
        collect(d.nix)
    assert all(p.exists() for p in paths)
    down_cache.up()
    assert_all_uploaded(d, paths, "outage")


@pytest.mark.parametrize("rooted", [True, False], ids=["rooted", "unrooted"])
def test_auto_gc_during_a_build_loop(npq_daemon_factory: Any, down_cache: DownCache,
                                     rooted: bool) -> None:
    """min-free above any free space: Nix collects before every build. Unrooted (the queue
    before GC roots) is the control: it shows the collector does delete queued paths."""
    d: DaemonHarness = npq_daemon_factory(cache=down_cache.spec,
                                          queue={**OUTAGE, "gc_roots": {"enable": rooted}})
    with d.nix.conf_file.open("a", encoding="utf-8") as conf:
        conf.write("min-free = 1000000000000000\nmax-free = 1000000000000000\n"
                   "min-free-check-interval = 0\n")
    d.start()
    paths = build(d, "autogc", 8)
    d.nix.build_expr('builtins.derivation { name = "last"; system = builtins.currentSystem;'
                     ' builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; }')
    gone_now = [p for p in paths if not p.exists()]
    down_cache.up()
    if rooted:
        assert not gone_now
        assert_all_uploaded(d, paths, "autogc")
        return
    assert gone_now, "the auto-GC deleted nothing: this test cannot tell roots from luck"
    waited = d.cli("wait", "--timeout", "120", check=False)
    assert waited.returncode == 13, waited.stderr
    assert "left the local store" in waited.stderr
    # Nix >= 2.2x collects in the background too: more may go after the look above.
    reported = {p for p, _, _ in lost(d)}
    assert reported >= {str(p) for p in gone_now}
    totals = status_totals(d)
    # every queued path (the 8 and "last") uploaded or reported lost: none silently
    assert (totals["done"] + totals["gone"], totals["gone"]) == (len(paths) + 1, len(reported))
    print(f"\nauto-GC without roots: {len(reported)} of {len(paths)} lost, all reported")


def test_cap_releases_the_oldest_and_reports_exactly_those(
        npq_daemon_factory: Any, down_cache: DownCache) -> None:
    content = "x" * 2000
    d: DaemonHarness = npq_daemon_factory(cache=down_cache.spec, queue=OUTAGE)
    # Measure one path's NAR size with the same content length, for a cap of three paths.
    probe = d.build("probe", content[:-5] + "probe")
    size = int(d.nix.run(["nix", "path-info", "--json", str(probe)]).stdout
               .split('"narSize":')[1].split(",")[0].split("}")[0])
    d.config["queue"]["gc_roots"] = {"max_bytes": 3 * size + size // 2}
    d.start()
    # The probe (spooled: no daemon yet) is queued too, first.
    paths = [probe] + [d.build(f"cap-{i}", f"{content[:-5]}{i:05d}") for i in range(N - 1)]
    oldest = paths[:N - 3]
    eventually(lambda: status_totals(d)["released"] == N - 3, what="three roots released")
    assert root_names(d.nix) == {p.name for p in paths[N - 3:]}
    collect(d.nix)
    assert [p.exists() for p in paths] == [False] * (N - 3) + [True] * 3
    down_cache.up()
    waited = d.cli("wait", "--timeout", "120", check=False)
    assert waited.returncode == 13, waited.stderr
    assert sorted(p for p, _, released in lost(d) if released) == sorted(map(str, oldest))
    totals = status_totals(d)
    assert (totals["gone"], totals["released"], totals["done"]) == (N - 3, N - 3, 3), totals
    assert d.log_text().count("GC root of") == N - 3
    d.cli("drop", "--all")
    assert d.cli("wait", "--timeout", "30", check=False).returncode == 0
    print(f"\ncap of 3.5 paths, {N} queued in an outage: {N - 3} released, {N - 3} lost, "
          "exactly those reported")


def test_uninstall_leaves_no_roots(nix: IsolatedNix, tmp_path: Path) -> None:
    """The guide's install (generate --include-into) and uninstall (--remove-include): paths
    queued while the daemon never ran are rooted; after the uninstall nothing holds them."""
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({
        "targets": [{"name": "local", "url": f"file://{tmp_path / 'cache'}"}],
        "nix": {"store_dir": str(nix.store_dir), "state_dir": str(nix.state_dir)},
        "queue": {"socket": str(tmp_path / "q.sock"), "state_dir": str(tmp_path / "state"),
                  "spool_dir": str(tmp_path / "spool")},
        "service": {"user": "root"}}), "utf-8")
    out = tmp_path / "out"
    npq = str(Path(sys.executable).parent / "nix-push-queue")
    subprocess.run([npq, "generate", str(cfg), "--out", str(out), "--prefix", str(out),
                    "--executable", npq, "--include-into", str(nix.conf_file)], check=True,
                   capture_output=True)
    paths = [nix.build_expr(text_derivation(f"uninstall-{i}", f"{i} {tmp_path}"))[0]
             for i in range(3)]
    assert root_names(nix) == {p.name for p in paths}
    collect(nix)
    assert all(p.exists() for p in paths)
    removed = subprocess.run([npq, "generate", "--remove-include", str(nix.conf_file),
                              "--prefix", str(out)], check=True, capture_output=True, text=True)
    assert f"released 3 GC root(s) in {nix.state_dir}/gcroots/nix-push-queue" in removed.stdout
    assert not (nix.state_dir / "gcroots/nix-push-queue").exists()
    collect(nix)
    assert not any(p.exists() for p in paths), "something still roots the queued paths"


def test_age_cap_releases_roots_older_than_max_age(npq_daemon_factory: Any,
                                                   down_cache: DownCache) -> None:
    d: DaemonHarness = npq_daemon_factory(
        cache=down_cache.spec, queue={**OUTAGE, "gc_roots": {"max_age": 2, "max_bytes": None}})
    d.start()
    paths = build(d, "aged", 3)
    eventually(lambda: status_totals(d)["released"] == 3, what="roots released by age")
    assert not root_names(d.nix)
    assert d.log_text().count("past gc_roots.max_age 2 s") == 3
    collect(d.nix)
    down_cache.up()
    assert d.cli("wait", "--timeout", "120", check=False).returncode == 13
    assert sorted(p for p, _, released in lost(d) if released) == sorted(map(str, paths))
