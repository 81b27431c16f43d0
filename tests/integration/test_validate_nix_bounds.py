"""A `.nix` config is a program: the real nix-instantiate evaluating one that loops, allocates
without end, prints megabytes or reads a secret. `validate` stops it in bounded time, leaves
no process behind (also when it is itself killed), and never prints what the config read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.test_validate_broken import npq

pytestmark = pytest.mark.integration

TARGET = '{{ targets = [ {{ name = "a"; {url} {extra} }} ]; {top} }}'
URL = 'url = "file:///srv/a";'
# About 10^9 additions in constant memory: runs for minutes.
SPIN = ('let l = builtins.genList (x: x) 1000; count = f: builtins.foldl\' (a: x: a + f x) 0 l; '
        "in " + TARGET.format(url=URL, top="",
                              extra="upload_timeout = count (x: count (y: count (z: 1)));"))


def evaluators(config: Path) -> list[int]:
    """Pids of processes evaluating `config` (whoever their parent is now)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(config).encode() in argv and any(b"nix-instantiate" in a for a in argv[:1]):
                found.append(int(entry.name))
    return found


def validate(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([npq(), "validate", *args, str(config)], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_a_config_that_never_ends_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    config = tmp_path / "spin.nix"
    config.write_text(SPIN)
    started = time.monotonic()
    result = validate(config, "--eval-timeout", "2")
    took = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr.startswith(f"{config}: nix-instantiate did not finish within 2 s")
    assert took < 6, took
    assert evaluators(config) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                    signal.SIGKILL])
def test_killing_validate_kills_the_evaluation(tmp_path: Path, signum: int) -> None:
    config = tmp_path / "spin.nix"
    config.write_text(SPIN)
    proc = subprocess.Popen([npq(), "validate", str(config)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not evaluators(config):
        assert time.monotonic() < deadline, "nix-instantiate never started"
        time.sleep(0.05)
    proc.send_signal(signum)
    code = proc.wait(10)
    assert proc.stderr is not None
    proc.stderr.close()
    # Exits as the signal would have made it: killed by it, or 128 + it.
    assert code in (-signum, 128 + signum), code
    deadline = time.monotonic() + 5
    while evaluators(config):  # PR_SET_PDEATHSIG acts as the kernel reaps the parent
        assert time.monotonic() < deadline, f"orphaned: {evaluators(config)}"
        time.sleep(0.05)


def test_a_config_that_allocates_without_end_runs_out_of_its_memory(tmp_path: Path) -> None:
    config = tmp_path / "hog.nix"
    config.write_text(TARGET.format(
        url=URL, top="",
        extra="upload_timeout = builtins.length (builtins.genList (x: x) 2000000000);"))
    result = validate(config)
    assert result.returncode == 1
    assert "out of memory" in result.stderr
    assert evaluators(config) == []


def test_output_beyond_the_size_limit_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "big.nix"
    config.write_text(TARGET.format(
        url=URL, extra="", top='x = builtins.genList (i: "0123456789abcdef") 200000;'))
    result = validate(config)
    assert result.returncode == 1
    assert "printed more than 1024 KiB" in result.stderr
    assert evaluators(config) == []


@pytest.mark.parametrize("where", [
    ("url = builtins.readFile {secret};", "", "has the wrong form"),
    ("url = throw (builtins.readFile {secret});", "", "nix-instantiate failed: error:"),
    (URL, '"${{builtins.readFile {secret}}}" = 1;', "unknown key"),
    (URL, "x = builtins.fromJSON (builtins.readFile {secret});", "nix-instantiate failed"),
    ("url = builtins.substring 0 60 (builtins.readFile {secret});", "", "has the wrong form"),
], ids=["schema", "throw", "key", "fromJSON", "60-characters"])
def test_what_a_config_reads_is_never_printed(tmp_path: Path,
                                              where: tuple[str, str, str]) -> None:
    secret = tmp_path / "shadow"
    token = os.urandom(24).hex()
    secret.write_text(f"root:$6$salt${token}:19000:0:99999:7:::\nuser:x:{token[::-1]}\n")
    config = tmp_path / "reads.nix"
    url, top = (part.format(secret=secret) for part in where[:2])
    config.write_text(TARGET.format(url=url, extra="", top=top))
    result = validate(config)
    assert result.returncode == 1, result
    assert where[2] in result.stderr
    assert token not in result.stderr + result.stdout
    assert token[:12] not in result.stderr + result.stdout
    assert token[::-1][:12] not in result.stderr + result.stdout
    assert len(result.stderr) < 600, result.stderr
