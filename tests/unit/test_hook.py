from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nix_push_queue.client import hook
from nix_push_queue.commands import hook as hook_cmd
from nix_push_queue.config.schema import load_schema
from nix_push_queue.wire import protocol
from tests.fixtures.fake_daemon import FakeDaemon, Mode

from . import console_script

STORE = "/nix/store"
H = "0123456789abcdfghijklmnpqrsvwxyz"


def sp(i: int, name: str = "p") -> str:
    return f"{STORE}/{i:032d}-{name}"


def settings_for(tmp_path: Path, socket: Path, timeout: float = 2.0) -> hook.Settings:
    return hook.Settings(socket=str(socket), spool_dir=str(tmp_path / "spool"),
                         store_dir=STORE, timeout=timeout, nix_bin_dir=None)


def spooled(tmp_path: Path) -> list[str]:
    d = tmp_path / "spool"
    return sorted(line for f in d.glob("*.spool") for line in f.read_text().splitlines())


def test_parse_argv() -> None:
    given, config, problems = hook_cmd.parse_argv(
        ["--socket", "/s", "--spool-dir=/d", "--timeout", "1.5", "--config", "/c.json",
         "--bogus", "--store-dir"])
    assert given == {"socket": "/s", "spool_dir": "/d", "timeout": 1.5}
    assert config == "/c.json"
    assert problems == ["ignoring unknown argument '--bogus'", "--store-dir needs a value"]
    assert hook_cmd.parse_argv(["--timeout", "soon"])[2] == [
        "ignoring --timeout 'soon': not a number"]


def test_settings_flags_over_config_over_schema(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"queue": {"socket": "/cfg.sock", "spool_dir": "/cfg/spool"},
                               "hook": {"timeout": 7}}))
    s = hook.resolve_settings({"socket": "/flag.sock"}, str(cfg))
    defs = load_schema()["$defs"]
    assert (s.socket, s.spool_dir, s.timeout) == ("/flag.sock", "/cfg/spool", 7.0)
    assert s.store_dir == defs["nix"]["properties"]["store_dir"]["default"]
    assert s.nix_bin_dir is None


def test_settings_with_unreadable_config_use_schema_defaults(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = hook.resolve_settings({"timeout": -1.0}, str(tmp_path / "missing.json"))
    queue = load_schema()["$defs"]["queue"]["properties"]
    assert (s.socket, s.spool_dir) == (queue["socket"]["default"], queue["spool_dir"]["default"])
    assert s.timeout == load_schema()["$defs"]["hook"]["properties"]["timeout"]["default"]
    err = capsys.readouterr().err
    assert "nix-push-queue hook: cannot read config" in err and "invalid timeout" in err


def _drv(tmp_path: Path, outputs: list[tuple[str, str]]) -> str:
    drv = tmp_path / f"{H}-x.drv"
    outs = ",".join(f'("{n}","{p}","","")' for n, p in outputs)
    drv.write_text(f'Derive([{outs}],[("/nix/store/{H}-dep.drv",["out"])],[],"x86_64-linux",'
                   '"/bin/sh",["-c","echo"],[("out","")])')
    return str(drv)


def test_drv_outputs(tmp_path: Path) -> None:
    assert hook.drv_outputs(_drv(tmp_path, [("dev", sp(1)), ("out", sp(2))])) == [sp(1), sp(2)]
    assert hook.drv_outputs(_drv(tmp_path, [("out", "")])) is None  # content-addressed
    (tmp_path / "junk.drv").write_text("DrvWithVersion(...)")
    assert hook.drv_outputs(str(tmp_path / "junk.drv")) is None
    assert hook.drv_outputs(str(tmp_path / "missing.drv")) is None


def test_build_outputs_validates_and_dedups(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    s = settings_for(tmp_path, tmp_path / "none.sock")
    got = hook.build_outputs(f"{sp(1)} /etc/passwd {sp(1)}  {STORE}/{H}-a;b\n{sp(2)}", "", s,
                             time.monotonic() + 5, {})
    assert got == [sp(1), sp(2)]
    err = capsys.readouterr().err
    assert "refusing '/etc/passwd'" in err and "refusing '/nix/store/" in err
    assert hook.build_outputs("", "/etc/shadow", s, time.monotonic() + 5, {}) == []
    assert "not a derivation" in capsys.readouterr().err


def test_sent_to_a_daemon_that_acks(tmp_path: Path,
                                    fake_daemon: Callable[[Mode], FakeDaemon]) -> None:
    daemon = fake_daemon("ack")
    drv = f"{STORE}/{H}-x.drv"
    outcome = hook.run(settings_for(tmp_path, daemon.path), f"{sp(1)} {sp(2)}", drv, {})
    assert outcome == "sent"
    assert daemon.requests == [protocol.EnqueueRequest((sp(1), sp(2), f"{drv}^*"), "hook")]
    assert not (tmp_path / "spool").exists()


@pytest.mark.parametrize("mode", ["error", "silent", "close"])
def test_spooled_when_the_daemon_fails(tmp_path: Path, mode: Mode,
                                       fake_daemon: Callable[[Mode], FakeDaemon],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    daemon = fake_daemon(mode)
    started = time.monotonic()
    outcome = hook.run(settings_for(tmp_path, daemon.path, timeout=0.5), sp(1), "", {})
    elapsed = time.monotonic() - started
    assert outcome == "spooled" and spooled(tmp_path) == [sp(1)]
    assert elapsed < 30  # bounded by the deadline (0.5 s); generous for a loaded machine
    err = capsys.readouterr().err
    assert {"error": "disk on fire", "silent": "did not answer in time",
            "close": "closed the connection"}[mode] in err


def test_spooled_when_no_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hook.run(settings_for(tmp_path, tmp_path / "no.sock"), sp(1), "", {}) == "spooled"
    assert spooled(tmp_path) == [sp(1)]
    (tmp_path / "plain").write_text("")
    assert hook.run(settings_for(tmp_path, tmp_path / "plain"), sp(2), "", {}) == "spooled"
    assert "no daemon listening" in capsys.readouterr().err


def test_only_unacknowledged_chunks_are_spooled(tmp_path: Path,
                                                fake_daemon: Callable[[Mode], FakeDaemon]
                                                ) -> None:
    daemon = fake_daemon("ack_once")
    paths = [sp(i) for i in range(15_000)]
    assert hook.run(settings_for(tmp_path, daemon.path), " ".join(paths), "", {}) == "spooled"
    assert daemon.paths() == paths[:10_000]
    assert spooled(tmp_path) == paths[10_000:]


def test_lost_when_the_spool_fails_too(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "spool").write_text("a file, not a directory")
    assert hook.run(settings_for(tmp_path, tmp_path / "no.sock"), sp(1), "", {}) == "lost"
    err = capsys.readouterr().err
    assert "spool failed too" in err and f"not queued: {sp(1)}" in err


def test_main_fast_exits_zero_on_anything(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    for exc in (RuntimeError("bug"), KeyboardInterrupt(), SystemExit(3), MemoryError()):
        def boom(*args: object, _exc: BaseException = exc) -> str:
            raise _exc

        monkeypatch.setattr(hook, "run", boom)
        assert hook_cmd.main_fast(["--socket", "/x"], {"OUT_PATHS": sp(1)}) == 0
    assert capsys.readouterr().err.count("nix-push-queue hook: unexpected error") == 4
    assert hook_cmd.main_fast(["--help"], {}) == 0
    assert "usage: nix-push-queue hook" in capsys.readouterr().out


HEAVY = ("argparse", "logging", "typing", "dataclasses", "asyncio", "jsonschema", "jinja2",
         "yaml", "sqlite3", "subprocess", "pathlib", "nix_push_queue.config",
         "nix_push_queue.wire.protocol", "nix_push_queue.errors")


@pytest.mark.parametrize("how", ["out_paths", "drv_path"])
def test_hook_imports_nothing_heavy(tmp_path: Path, how: str) -> None:
    """The console script's hook path, measured with -X importtime."""
    store = tmp_path / "store"
    store.mkdir()
    out = f"{store}/{H}-out"
    drv = f"{store}/{'1' * 32}-x.drv"
    Path(drv).write_text(f'Derive([("out","{out}","","")],[],[],"x","/bin/sh",[],[])')
    env = console_script.environment(DRV_PATH=drv,
                                     OUT_PATHS=out if how == "out_paths" else "")
    proc = subprocess.run(
        console_script.command(
            "hook", "--socket", str(tmp_path / "none.sock"), "--spool-dir",
            str(tmp_path / "spool"), "--store-dir", str(store), "--state-dir",
            str(tmp_path / "var"), "--timeout", "5", python_flags=("-X", "importtime")),
        env=env, capture_output=True, text=True, timeout=120, check=True)
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "nix_push_queue.client.hook" in imported  # the measurement works
    assert sorted(m for m in imported if m.startswith(HEAVY)) == []
    assert spooled(tmp_path) == [out, f"{drv}^*"]
