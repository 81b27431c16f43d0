"""Unit tests of uploader.py: URL building, redaction, classification, and the child process
handling with stand-in `nix` programs (the real one is in tests/integration/test_upload_*)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import textwrap
import time
from pathlib import Path

import pytest

from nix_push_queue.config import Target, load_document
from nix_push_queue.config.model import Filters
from nix_push_queue.daemon.nixerrors import classify, redact, summarize
from nix_push_queue.daemon.storeurl import TargetKeys, store_url
from nix_push_queue.daemon.uploader import NixCopyUploader
from nix_push_queue.nix import runner


def _target(url: str, **extra: object) -> Target:
    return load_document({"targets": [{"name": "t", "url": url, **extra}]}).targets[0]


def test_binary_cache_url_gets_compression_options_and_secret_key() -> None:
    target = _target("https://cache.example.org/sub", compression="zstd", priority=30,
                     substitute=True, public_key="cache.example.org-1:" + "A" * 43 + "=",
                     options={"write-nar-listing": True, "parallel-compression": "1"})
    url = store_url(target, TargetKeys(secret_key="/run/credentials/x/t-secret-key"))
    assert url == ("https://cache.example.org/sub?parallel-compression=1"
                   "&write-nar-listing=true&compression=zstd"
                   "&secret-key=/run/credentials/x/t-secret-key")
    assert "priority" not in url


def test_url_keeps_existing_query_and_quotes_odd_key_paths() -> None:
    target = _target("s3://bucket?region=eu-west-1")
    url = store_url(target, TargetKeys(secret_key="/keys/a b&c=d.sec"))
    assert url == ("s3://bucket?region=eu-west-1&compression=zstd"
                   "&secret-key=/keys/a%20b%26c%3Dd.sec")


def test_compression_default_level_and_threads_become_url_params() -> None:
    assert store_url(_target("file:///srv/c"), TargetKeys()) == "file:///srv/c?compression=zstd"
    target = _target("file:///srv/c", compression="xz", compression_level=3,
                     parallel_compression=True)
    assert store_url(target, TargetKeys()) == (
        "file:///srv/c?compression=xz&compression-level=3&parallel-compression=true")


def test_users_own_compression_in_url_or_options_wins() -> None:
    url = store_url(_target("file:///srv/c?compression=xz"), TargetKeys())
    assert url == "file:///srv/c?compression=xz"
    target = _target("file:///srv/c", options={"compression-level": 5}, compression_level=2)
    assert store_url(target, TargetKeys()) == (
        "file:///srv/c?compression-level=5&compression=zstd")


def test_stores_that_are_not_binary_caches_get_no_compression() -> None:
    assert store_url(_target("ssh-ng://builder"), TargetKeys()) == "ssh-ng://builder"


def test_ssh_url_gets_ssh_key_but_never_secret_key() -> None:
    target = _target("ssh-ng://builder@cache.example.org")
    url = store_url(target, TargetKeys(secret_key="/k/sec", ssh_key="/k/ssh"))
    assert url == "ssh-ng://builder@cache.example.org?ssh-key=/k/ssh"


def test_file_url_without_keys_gets_only_the_compression() -> None:
    url = store_url(_target("file:///srv/cache", compression="none"), TargetKeys())
    assert url == "file:///srv/cache?compression=none"


def test_redact_strips_key_parameters() -> None:
    text = "error: cannot open 'http://h/c?secret-key=/etc/k.sec&x=1' or ssh-ng://h?ssh-key=/k"
    assert redact(text) == ("error: cannot open 'http://h/c?secret-key=<redacted>&x=1' "
                            "or ssh-ng://h?ssh-key=<redacted>")


def test_summarize_keeps_the_error_not_the_progress() -> None:
    stderr = textwrap.dedent("""\
        copying 2 paths...
        copying path '/nix/store/a' to 'http://h?secret-key=/k'...
        warning: error: unable to download 'http://h/x': Couldn't connect (7); retrying in 300 ms
        error: unable to download 'http://h/nix-cache-info': HTTP error 503

               response body:

               <html>busy</html>
        """)
    assert summarize(stderr) == ("error: unable to download 'http://h/nix-cache-info': "
                                 "HTTP error 503")


def test_summarize_keeps_the_reason_ssh_gave() -> None:
    stderr = ("copying 1 paths...\nroot@127.0.0.1: Permission denied (publickey).\n"
              "error: cannot open connection to remote store 'ssh-ng://127.0.0.1': "
              "error: unexpected end-of-file\n")
    assert summarize(stderr) == (
        "root@127.0.0.1: Permission denied (publickey). | error: cannot open connection to "
        "remote store 'ssh-ng://127.0.0.1': error: unexpected end-of-file")


def _result(stderr: str, code: int = 1, timed_out: bool = False) -> runner.CmdResult:
    return runner.CmdResult(("nix",), code, "", stderr, timed_out)


@pytest.mark.parametrize(("stderr", "code", "kind"), [
    ("", 0, "ok"),
    ("error: unable to download 'http://h/x': Couldn't connect to server (7)", 1, "transient"),
    ("error: unable to download 'http://h/x': Couldn't resolve host name (6)", 1, "transient"),
    ("error: unable to upload 'http://h/x.narinfo': HTTP error 503", 1, "transient"),
    ("error: unable to upload 'http://h/x': HTTP error 429 ('Too Many')", 1, "transient"),
    ("error: writing to file: No space left on device", 1, "transient"),
    ("error: opening file '/srv/cache/x.narinfo': Permission denied", 1, "transient"),
    ("error: something nobody has seen before", 1, "transient"),
    ("", -9, "transient"),
    ("error: don't know how to open Nix store 's3://b'", 1, "permanent"),
    ("error: secret key is corrupt", 1, "permanent"),
    ("error: unknown compression method 'foo'", 1, "permanent"),
    ("error: cannot add path '/nix/store/a' because it lacks a valid signature", 1,
     "permanent"),
    ("error: unable to upload 'http://h/x': HTTP error 403 ('Forbidden')", 1, "permanent"),
    ("Host key verification failed.\nerror: cannot open connection", 1, "permanent"),
    ("error: opening file '/run/creds/t-secret-key': Permission denied", 1, "permanent"),
    ('error: opening file "/run/creds/t-secret-key": No such file or directory', 1,
     "permanent"),  # Nix 2.34's quotes
    ("error: cannot add path '/nix/store/a' because it lacks a signature by a trusted key",
     1, "permanent"),  # Nix 2.26 and 2.34
])
def test_classify(stderr: str, code: int, kind: str) -> None:
    assert classify(_result(stderr, code), ["/run/creds/t-secret-key"]) == kind


def test_timeout_is_transient() -> None:
    assert classify(_result("error: whatever corrupt", 0, timed_out=True)) == "transient"


def _fake_nix(bin_dir: Path, body: str, invalid: tuple[str, ...] = (),
              version: str = "nix (Nix) 2.8.0", path_info: str | None = None) -> None:
    """Stand-in `nix`: `--version` prints `version`; `nix path-info --json` prints
    `path_info` if given, else reports every path valid (but `invalid`) with a size, as Nix
    2.8 does; any other command (`nix copy`) runs `body`."""
    bin_dir.mkdir()
    gone = " ".join(invalid)
    canned = f"printf '%s' {shlex.quote(path_info)}; exit 0" if path_info is not None else ""
    (bin_dir / "nix").write_text(f"""#!/bin/sh
echo "$@" >> {bin_dir / "argv"}
if [ "$3" = --version ]; then echo {shlex.quote(version)}; exit 0; fi
if [ "$3" = path-info ]; then
  {canned}
  shift 4; sep=""; printf '['
  for p; do
    case " {gone} " in
      *" $p "*) printf '%s{{"path":"%s","valid":false}}' "$sep" "$p" ;;
      *) printf '%s{{"path":"%s","narSize":100,"references":[]}}' "$sep" "$p" ;;
    esac
    sep=","
  done
  printf ']'; exit 0
fi
{body}
""")
    (bin_dir / "nix").chmod(0o755)


def _uploader(bin_dir: Path, timeout: float = 60) -> NixCopyUploader:
    return NixCopyUploader(filters=Filters((), ()), timeout=timeout,
                           env={"PATH": os.environ["PATH"]}, nix_bin_dir=str(bin_dir))


def test_credentials_reach_only_the_child_env(tmp_path: Path) -> None:
    seen = tmp_path / "env"
    _fake_nix(tmp_path / "bin", f'env > {seen}; echo "copying 1 paths..." >&2')
    target = _target("s3://bucket", credentials_file="/etc/aws-creds")
    keys = TargetKeys(credentials="/run/creds/t-credentials")
    uploader = NixCopyUploader(filters=Filters((), ()), timeout=60, env={"PATH": "/bin"},
                               keys={"t": keys}, nix_bin_dir=str(tmp_path / "bin"))
    result = asyncio.run(uploader.upload(target, ["/nix/store/" + "a" * 32 + "-x"]))
    assert result.kind == "ok", result.message
    assert "AWS_SHARED_CREDENTIALS_FILE=/run/creds/t-credentials" in seen.read_text()
    assert "AWS_SHARED_CREDENTIALS_FILE" not in os.environ


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # `nix` starts a grandchild (as nix copy starts ssh) and both hang.
    _fake_nix(tmp_path / "bin", f"sleep 300 & echo $! > {pid_file}; sleep 300")
    started = time.monotonic()
    result = asyncio.run(_uploader(tmp_path / "bin", timeout=1).upload(
        _target("file:///srv/cache"), ["/nix/store/" + "a" * 32 + "-x"]))
    elapsed = time.monotonic() - started
    assert result.kind == "transient" and "timed out" in result.message
    assert elapsed < 60
    _assert_dead(int(pid_file.read_text()))


def test_cancellation_kills_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    _fake_nix(tmp_path / "bin", f"sleep 300 & echo $! > {pid_file}; sleep 300")

    async def scenario() -> None:
        task = asyncio.create_task(_uploader(tmp_path / "bin").upload(
            _target("file:///srv/cache"), ["/nix/store/" + "a" * 32 + "-x"]))
        while not pid_file.exists() or not pid_file.read_text().strip():
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    _assert_dead(int(pid_file.read_text()))


def test_unreadable_path_info_is_permanent_at_once(tmp_path: Path) -> None:
    """A form of `nix path-info --json` we do not know is our bug: no retry can fix it."""
    calls = tmp_path / "calls"
    _fake_nix(tmp_path / "bin", f"echo copy >> {calls}", version="nix (Nix) 2.99.0",
              path_info='"a string"')
    result = asyncio.run(_uploader(tmp_path / "bin").upload(
        _target("file:///srv/cache"), ["/nix/store/" + "a" * 32 + "-x"]))
    assert result.kind == "permanent"
    assert "nix path-info --json" in result.message and "a string" in result.message
    assert not calls.exists()  # nothing was copied


def test_unreadable_version_is_permanent(tmp_path: Path) -> None:
    _fake_nix(tmp_path / "bin", "exit 0", version="something else 1")
    result = asyncio.run(_uploader(tmp_path / "bin").upload(
        _target("file:///srv/cache"), ["/nix/store/" + "a" * 32 + "-x"]))
    assert result.kind == "permanent" and "Nix version" in result.message


def test_object_form_with_json_format_flag(tmp_path: Path) -> None:
    """Nix >= 2.33 gets `--json-format 2`; a null entry is a path gone from the store."""
    args = tmp_path / "args"
    path, gone = "/nix/store/" + "a" * 32 + "-x", "/nix/store/" + "b" * 32 + "-y"
    out = json.dumps({"version": 2, "storeDir": "/nix/store", "info": {
        path[11:]: {"version": 2, "narSize": 7, "references": []}, gone[11:]: None}})
    _fake_nix(tmp_path / "bin", f'echo "$@" > {args}; echo "copying 1 paths..." >&2',
              version="nix (Nix) 2.34.8", path_info=out)
    result = asyncio.run(_uploader(tmp_path / "bin").upload(
        _target("file:///srv/cache"), [path, gone]))
    assert result.kind == "ok", result.message
    assert result.gone == (gone,) and result.sizes == {path: 7}
    assert args.read_text().split()[2:4] == ["copy", "--to"]
    calls = (tmp_path / "bin" / "argv").read_text().splitlines()
    assert [c.split()[2] for c in calls] == ["--version", "path-info", "copy"]
    assert calls[1].split()[3:6] == ["--json", "--json-format", "2"]


def _assert_dead(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # A killed child of an exited shell is reaped by init; until then it is a zombie.
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} survived")


def test_excluded_and_gone_paths_are_not_copied(tmp_path: Path) -> None:
    log = tmp_path / "argv"
    gone = "/nix/store/" + "g" * 32 + "-gone"
    keep = "/nix/store/" + "k" * 32 + "-keep"
    drv = "/nix/store/" + "d" * 32 + "-thing.drv"
    bin_dir = tmp_path / "bin"
    _fake_nix(bin_dir, f'echo "$@" >> {log}', invalid=(gone,))
    uploader = NixCopyUploader(filters=Filters(("*.drv",), ()), timeout=60,
                               env={"PATH": "/bin"}, nix_bin_dir=str(bin_dir))
    result = asyncio.run(uploader.upload(_target("file:///c"), [keep, gone, drv, keep]))
    assert result.kind == "ok"
    assert result.gone == (gone,) and result.skipped == (drv,)
    assert result.sizes == {keep: 100}
    assert log.read_text().split() == [
        "--extra-experimental-features", "nix-command", "copy", "--to", "file:///c?compression=zstd",
        keep]
