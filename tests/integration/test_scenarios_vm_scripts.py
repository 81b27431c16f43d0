"""The NixOS VM tests' scripts, evaluated here by real Nix and run against scripted machines.

The VM tests need KVM and nixpkgs, which this machine lacks. What can break without them
is checked here: vm-tests/scripts.nix evaluates; every script is valid Python that imports
its scenario and calls it with existing Params fields; it only names machines its test file
defines; and it drives them through the whole scenario (build, wait, delete, substitute with
signatures required). The machines are stand-ins that answer commands from a script.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.nix.isolated import IsolatedNix

pytestmark = pytest.mark.integration

VM_TESTS = Path(__file__).resolve().parents[2] / "vm-tests"
TESTS = sorted(p.stem for p in VM_TESTS.glob("*.nix")
               if p.stem not in ("default", "lib", "constants", "scripts"))


@dataclass
class ScriptedMachine:
    """Answers the commands scenarios send as a healthy VM would; records every call."""

    name: str
    store: dict[str, str]  # shared by all machines: path -> content
    calls: list[tuple[str, str]] = field(default_factory=list)

    def succeed(self, *commands: str, timeout: int | None = None) -> str:
        return "".join(self._answer(c) for c in commands)

    def _answer(self, command: str) -> str:
        self.calls.append(("succeed", command))
        if "nix-build" in command:
            expr = shlex.split(command)[-1]
            name = json.loads(re.search(r'name = ("[^"]*")', expr).group(1))  # type: ignore[union-attr]
            content = json.loads(re.search(r'content = ("[^"]*")', expr).group(1))  # type: ignore[union-attr]
            path = f"/nix/store/{len(self.store):032d}-{name}"
            self.store[path] = content
            return path + "\n"
        if command.startswith("cat "):
            return self._cat(shlex.split(command)[1])
        return ""

    def _cat(self, path: str) -> str:
        if path in self.store:
            return self.store[path]
        if path.endswith("aws-credentials"):
            return "[default]\naws_access_key_id=npqabc\naws_secret_access_key=secret\n"
        if path.endswith("ssh.pub"):
            return "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBuilder npq-test\n"
        if path.endswith(".pub"):
            return "npq-test-1:" + "B" * 43 + "=\n"
        raise AssertionError(f"{self.name}: cat of unknown file {path}")

    def fail(self, *commands: str, timeout: int | None = None) -> str:
        self.calls.extend(("fail", c) for c in commands)
        return ""

    def wait_for_unit(self, unit: str, timeout: int = 900) -> None:
        self.calls.append(("wait_for_unit", unit))

    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str:
        self.calls.append(("wait_until_succeeds", command))
        return ""

    def crash(self) -> None:
        self.calls.append(("crash", ""))

    def start(self) -> None:
        self.calls.append(("start", ""))

    def shutdown(self) -> None:
        self.calls.append(("shutdown", ""))


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    nix = IsolatedNix.create(tmp_path_factory.mktemp("nix"))
    expr = f"import {VM_TESTS}/scripts.nix {{ scenarios = {json.dumps(str(VM_TESTS))}; }}"
    proc = nix.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr])
    result: dict[str, str] = json.loads(proc.stdout)
    return result


def node_names(test: str) -> list[str]:
    text = (VM_TESTS / f"{test}.nix").read_text(encoding="utf-8")
    return sorted(set(re.findall(r"\bnodes\.([A-Za-z0-9_-]+)", text)))


def run_script(script: str, machines: dict[str, ScriptedMachine]) -> list[str]:
    subtests: list[str] = []

    @contextlib.contextmanager
    def subtest(name: str) -> Iterator[None]:
        subtests.append(name)
        yield

    started: list[bool] = []
    namespace: dict[str, Any] = {"subtest": subtest, "start_all": lambda: started.append(True),
                                 **machines}
    exec(compile(script, "<testScript>", "exec"), namespace)
    assert started, "the script never calls start_all()"
    return subtests


def test_every_test_file_has_a_script(scripts: dict[str, str]) -> None:
    assert sorted(scripts) == TESTS
    default = (VM_TESTS / "default.nix").read_text(encoding="utf-8")
    for test in TESTS:
        assert f"./{test}.nix" in default, f"{test}.nix is not in vm-tests/default.nix"


@pytest.mark.parametrize("test", TESTS)
def test_script_drives_the_scenario(test: str, scripts: dict[str, str]) -> None:
    store: dict[str, str] = {}
    machines = {n: ScriptedMachine(n, store) for n in node_names(test)}
    subtests = run_script(scripts[test], machines)
    assert subtests, "no subtest blocks"
    calls = [(m.name, kind, cmd) for m in machines.values() for kind, cmd in m.calls]
    builds = [c for c in calls if "nix-build" in c[2]]
    assert builds, "nothing was built"
    assert all("NIX_REMOTE=daemon" in c[2] for c in builds), "builds bypass the nix-daemon"
    realised = [c for c in calls if c[1] == "succeed" and "nix-store --realise" in c[2]]
    assert len(realised) == len(store), "not every built path was substituted back"
    assert all("--option require-sigs true" in c[2] for c in realised)
    refused = [c for c in calls if c[1] == "fail" and "nix-store --realise" in c[2]]
    assert refused and all("nobody-1:" in c[2] for c in refused)
    # Before substituting, the path is absent: deleted, or (consumer) never there.
    assert any(c[1] == "fail" and c[2].startswith("test -e /nix/store/") for c in calls)


def test_crash_script_really_crashes(scripts: dict[str, str]) -> None:
    store: dict[str, str] = {}
    machines = {n: ScriptedMachine(n, store) for n in node_names("crash")}
    run_script(scripts["crash"], machines)
    kinds = [k for k, _ in machines["builder"].calls]
    assert kinds.index("crash") < kinds.index("start")
    assert ("succeed", "systemctl kill --signal=SIGKILL nix-push-queue.service") in \
        machines["builder"].calls
    assert [k for k, _ in machines["cache"].calls].count("shutdown") == 1
