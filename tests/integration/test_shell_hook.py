"""The generated /bin/sh post-build-hook: what it promises without Python on Nix's path.

- hostile OUT_PATHS / DRV_PATH values (newlines, globs, `$(…)`, `;`, quotes, `..`, long
  names) are refused: never executed, never spooled, the hook exits 0;
- a GC root for each output and a whole spool entry (outputs plus `DRV^*`) exist before it
  exits, and kill -9 at any instant leaves a whole entry or none;
- Nix 2.8.0's empty OUT_PATHS: the outputs are read from the .drv, as `nix-store --query
  --outputs` names them; a floating CA output is left to the daemon (`DRV^*` only);
- a spool it cannot write hands over to the Python hook, which reaches the daemon;
- run by real Nix, the daemon queues the entry within milliseconds (inotify).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nix_push_queue.config import load_document
from nix_push_queue.generate import hook_wrapper
from nix_push_queue.nix import storepath
from nix_push_queue.nix.isolated import IsolatedNix, text_derivation
from tests.fixtures.daemon import NPQ

pytestmark = pytest.mark.integration

MULTI = """builtins.derivation {
  name = "multi-%s"; system = builtins.currentSystem; builder = "/bin/sh";
  outputs = [ "out" "dev" ];
  args = [ "-c" "echo out > $out; echo dev > $dev" ];
}"""


def _wrapper(nix: IsolatedNix, tmp_path: Path, **queue: str) -> Path:
    config = load_document({
        "targets": [{"name": "c", "url": f"file://{tmp_path / 'cache'}"}],
        "nix": {"store_dir": str(nix.store_dir), "state_dir": str(nix.state_dir)},
        "queue": {"socket": str(tmp_path / "q.sock"), "state_dir": str(tmp_path / "state"),
                  "spool_dir": str(tmp_path / "spool"), **queue},
        "hook": {"timeout": 2}})
    wrapper = tmp_path / "post-build-hook"
    wrapper.write_text(hook_wrapper(config, [NPQ]))
    wrapper.chmod(0o755)
    return wrapper


def _run(wrapper: Path, nix: IsolatedNix, out_paths: str, drv_path: str = ""
         ) -> subprocess.CompletedProcess[str]:
    env = nix.env()
    env.update(OUT_PATHS=out_paths, DRV_PATH=drv_path)
    return subprocess.run([str(wrapper)], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def _entries(tmp_path: Path) -> list[list[str]]:
    return [f.read_text().splitlines() for f in sorted((tmp_path / "spool").glob("*.spool"))]


def _roots(nix: IsolatedNix) -> set[str]:
    directory = nix.state_dir / "gcroots" / "nix-push-queue"
    return {os.readlink(p) for p in directory.iterdir()} if directory.is_dir() else set()


def _drv_of(nix: IsolatedNix, path: Path) -> str:
    return nix.run(["nix-store", "--query", "--deriver", str(path)]).stdout.strip()


def test_roots_and_spools_outputs_and_derivation(nix: IsolatedNix, tmp_path: Path) -> None:
    wrapper = _wrapper(nix, tmp_path)
    outs = [str(p) for p in nix.build_expr(MULTI % "a")]
    drv = _drv_of(nix, Path(outs[0]))
    run = _run(wrapper, nix, " ".join(outs), drv)
    assert (run.returncode, run.stderr) == (0, "")
    assert _entries(tmp_path) == [[*outs, f"{drv}^*"]]
    assert _roots(nix) == set(outs)
    assert not [f for f in (tmp_path / "spool").iterdir() if f.name.startswith(".")]


def test_empty_out_paths_read_from_the_drv_like_nix_store(nix: IsolatedNix,
                                                          tmp_path: Path) -> None:
    """Nix 2.8.0's case, on every Nix: the .drv names what `nix-store -q --outputs` does."""
    wrapper = _wrapper(nix, tmp_path)
    outs = nix.build_expr(MULTI % "b")
    drv = _drv_of(nix, outs[0])
    expected = nix.run(["nix-store", "--query", "--outputs", drv]).stdout.split()
    assert _run(wrapper, nix, "", drv).returncode == 0
    (entry,) = _entries(tmp_path)
    assert sorted(entry[:-1]) == sorted(expected) and entry[-1] == f"{drv}^*"
    assert _roots(nix) == set(expected)


HOSTILE = [
    "/etc/passwd", "$(touch CANARY)", "`touch CANARY`", "x;touch CANARY", "*", "/nix/store/*",
    "{store}/{h}-a b", "{store}/{h}-x\ntouch CANARY", "{store}/{h}-$(touch CANARY)",
    "{store}/{h}-x'\"", "{store}/{h}-../../etc", "{store}/{h}-.hidden", "{store}/{h}-" + "n" * 212,
    "{store}/{h}x-short", "{store}/" + "e" * 32 + "-bad-hash", "{store}/{h}-x/sub", "{store}/{h}",
    "{store}/../{h}-x", "-n", "{store}/{h}-x\x1b[31m",
]


def test_hostile_values_are_refused_never_run(nix: IsolatedNix, tmp_path: Path) -> None:
    wrapper = _wrapper(nix, tmp_path)
    (good,) = nix.build_expr(text_derivation("good", "g"))
    cwd_canary = tmp_path / "CANARY"
    h = "a" * 32
    for value in HOSTILE:
        value = value.replace("CANARY", str(cwd_canary)).format(store=nix.store_dir, h=h)
        for out_paths, drv in ((f"{value} {good}", ""), (str(good), value),
                               ("", value + ".drv")):
            run = _run(wrapper, nix, out_paths, drv)
            assert run.returncode == 0, (value, run.stderr)
            assert "refusing" in run.stderr or "ignoring DRV_PATH" in run.stderr, value
    assert not cwd_canary.exists()
    # Only well-formed store paths get through: `good`, and the words OUT_PATHS splits into
    # ("STORE/HASH-a b" is two words; Nix separates paths by spaces), as the Python hook does.
    lines = {line for entry in _entries(tmp_path) for line in entry}
    assert str(good) in lines
    assert all(storepath.problem(line, str(nix.store_dir)) is None for line in lines), lines
    assert lines - {str(good)} <= {f"{nix.store_dir}/{h}-a", f"{nix.store_dir}/{h}-x"}
    assert _roots(nix) == lines


def test_kill_9_at_any_instant_leaves_a_whole_entry_or_none(nix: IsolatedNix,
                                                            tmp_path: Path) -> None:
    wrapper = _wrapper(nix, tmp_path)
    outs = [str(p) for p in nix.build_expr(MULTI % "k")]
    drv = _drv_of(nix, Path(outs[0]))
    env = nix.env()
    env.update(OUT_PATHS=" ".join(outs), DRV_PATH=drv)
    rng = random.Random(18)
    whole = 0
    for _ in range(40):
        proc = subprocess.Popen([str(wrapper)], env=env, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for entry in _entries(tmp_path):
        assert entry == [*outs, f"{drv}^*"], entry
        whole += 1
    print(f"measured: 40 kill -9 at random instants, {whole} whole entries, none partial")


def test_unwritable_spool_hands_over_to_the_python_hook(nix: IsolatedNix,
                                                        tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    wrapper = _wrapper(nix, tmp_path, spool_dir=str(tmp_path / "a-file" / "spool"))
    (good,) = nix.build_expr(text_derivation("fallback", "f"))
    run = _run(wrapper, nix, str(good))
    assert run.returncode == 0
    assert "handing over to the Python hook" in run.stderr
    # no daemon and no spool either: the Python hook says so, path by path
    assert f"not queued: {good}" in run.stderr
    assert _roots(nix) == {str(good)}


def test_real_nix_and_daemon_queue_within_milliseconds(npq_daemon_factory: object) -> None:
    from tests.fixtures.daemon import DaemonHarness

    d: DaemonHarness = npq_daemon_factory()  # type: ignore[operator]
    d.start()
    path = d.build("inotify", os.urandom(8).hex())
    deadline = time.monotonic() + 0.5  # the poll alone would take up to a second
    while str(path) not in d.rows():
        assert time.monotonic() < deadline, "the spool entry was not picked up by inotify"
        time.sleep(0.005)
    d.wait_drained(timeout=120)
    d.assert_signed(path)


@pytest.mark.skipif(not Path("/usr/bin/strace").exists(), reason="strace is not installed")
def test_entry_spool_and_roots_directories_are_synced_before_exit(nix: IsolatedNix,
                                                                  tmp_path: Path) -> None:
    """Durable before Nix goes on, power cuts included: the entry, its directory and the
    directory of the new roots are each fsync'd (a GC at boot may precede the daemon)."""
    wrapper = _wrapper(nix, tmp_path)
    outs = [str(p) for p in nix.build_expr(MULTI % "s")]
    env = nix.env()
    env.update(OUT_PATHS=" ".join(outs), DRV_PATH=_drv_of(nix, Path(outs[0])))
    trace = tmp_path / "trace"
    run = subprocess.run(["/usr/bin/strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync",
                          "-o", str(trace), str(wrapper)], env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    assert (run.returncode, run.stderr) == (0, "")
    synced = {line.split("<", 1)[1].split(">", 1)[0]
              for line in trace.read_text().splitlines() if "sync(" in line and "<" in line}
    spool = (tmp_path / "spool").resolve()
    [entry] = spool.glob("*.spool")
    roots = (nix.state_dir / "gcroots" / "nix-push-queue").resolve()
    assert {str(entry), str(spool), str(roots)} <= synced, synced


def test_an_entry_taken_before_its_sync_is_still_no_failure(nix: IsolatedNix,
                                                             tmp_path: Path) -> None:
    """The daemon may take an entry (commit, then delete) between the hook's rename and its
    sync. The hook syncs it all the same and hands nothing to the Python hook (before, a
    sync by name failed then: a third of the builds beside an idle daemon started Python)."""
    wrapper = _wrapper(nix, tmp_path)
    text = wrapper.read_text()
    real_mv = next(line.split()[0] for line in text.splitlines()
                   if '-f -- "$spool/.$name.tmp"' in line)
    taken = tmp_path / "taken"
    taken.mkdir()
    # `mv -f -- TMP ENTRY`, then the entry is taken at once, as the daemon's inotify does
    mv_then_taken = tmp_path / "mv-then-taken"
    mv_then_taken.write_text(
        f'#!/bin/sh\n{real_mv} "$@" || exit\nexec {real_mv} -- "$4" {taken}/\n')
    mv_then_taken.chmod(0o755)
    wrapper.write_text(text.replace(f"{real_mv} -f --", f"{mv_then_taken} -f --"))
    outs = [str(p) for p in nix.build_expr(MULTI % "t")]
    drv = _drv_of(nix, Path(outs[0]))
    run = _run(wrapper, nix, " ".join(outs), drv)
    assert (run.returncode, run.stderr) == (0, "")
    assert [f.read_text().splitlines() for f in taken.iterdir()] == [[*outs, f"{drv}^*"]]
    assert _entries(tmp_path) == []
    assert _roots(nix) == set(outs)
