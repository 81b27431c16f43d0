"""The test run across Nix versions: the host leg, then `pytest -m nix` in each root.

The host runs every test that does not run Nix (unit, faults without Nix, VM, ...); each root
runs the `nix`-marked tests once with its own Nix and Python. A leg's JUnit report goes to
.cache/matrix/ in the checkout, and a table at the end sums up every leg.
"""

from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .chroot import SRC
from .roots import SUITES, Suite, suite

REPORTS = ".cache/matrix"
# pytest's exit code when a selection holds no test (e.g. `scripts/test tests/unit` in a root).
NO_TESTS = 5


@dataclass(frozen=True)
class LegResult:
    name: str
    nix: str
    python: str
    returncode: int
    seconds: float
    counts: str


def pick(spec: str) -> list[Suite]:
    """Legs from NPQ_MATRIX / --nix: "all", "host" (none), or a comma list of suites/versions."""
    if spec in ("", "all"):
        return list(SUITES.values())
    if spec == "host":
        return []
    return [suite(part.strip()) for part in spec.split(",") if part.strip()]


def split_markexpr(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """The user's -m expression (the last one wins, as in pytest) and the other arguments."""
    expr: str | None = None
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        if arg in ("-m", "--markexpr"):
            expr = next(it, "")
        elif arg.startswith("--markexpr="):
            expr = arg.split("=", 1)[1]
        elif arg.startswith("-m") and not arg.startswith("--"):
            expr = arg[2:]
        else:
            rest.append(arg)
    return expr, rest


def with_marker(user: str | None, ours: str) -> list[str]:
    return ["-m", ours if not user else f"({user}) and ({ours})"]


def junit_counts(report: Path) -> str:
    if not report.exists():
        return "no report"
    suites = ET.parse(report).getroot()
    node = suites.find("testsuite") if suites.tag == "testsuites" else suites
    if node is None:
        return "no report"
    total, fail, err, skip = (int(node.get(k, "0")) for k in
                              ("tests", "failures", "errors", "skipped"))
    return f"{total - fail - err - skip} passed, {fail} failed, {err} errors, {skip} skipped"


def run_host(args: Sequence[str], repo: Path, *, everything: bool) -> LegResult:
    user, rest = split_markexpr(args)
    report = repo / REPORTS / "junit-host.xml"
    marker = [] if everything else with_marker(user, "not nix")
    if everything and user is not None:
        marker = ["-m", user]
    argv = [sys.executable, "-m", "pytest", *marker, f"--junitxml={report}", *rest]
    print(f"== pytest, host leg ({'all tests' if everything else 'tests without Nix'}): "
          f"{_host_nix()}", flush=True)
    started = time.monotonic()
    code = subprocess.run(argv, cwd=repo, check=False).returncode
    return LegResult("host", _host_nix(), sys.version.split()[0], code,
                     time.monotonic() - started, junit_counts(report))


def run_leg(s: Suite, args: Sequence[str], repo: Path) -> LegResult:
    from .__main__ import shell

    user, rest = split_markexpr(args)
    report = f"{REPORTS}/junit-{s.name}.xml"
    nix = _in_root(s, ["nix", "--version"])
    python = _in_root(s, ["python", "-c", "import platform; print(platform.python_version())"])
    print(f"== pytest -m nix, leg {s.name}: {nix}, Python {python}", flush=True)
    started = time.monotonic()
    code = shell(s.name, ["python", "-m", "pytest", *with_marker(user, "nix"),
                          f"--junitxml={SRC}/{report}", *rest])
    return LegResult(s.name, nix, python, code, time.monotonic() - started,
                     junit_counts(repo / report))


def summary(results: Sequence[LegResult]) -> int:
    print("== matrix summary")
    failed = 0
    for r in results:
        ok = r.returncode in (0, NO_TESTS)
        failed += not ok
        print(f"{r.name:9} {r.nix:22} Python {r.python:8} {r.seconds:7.0f} s  "
              f"{'ok    ' if ok else 'FAILED'} {r.counts}")
    return 1 if failed else 0


def _host_nix() -> str:
    proc = subprocess.run(["nix", "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "no nix"


def _in_root(s: Suite, argv: list[str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "tests.matrix", "shell", s.name, "--", *argv],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() or f"(failed: {proc.stderr.strip()[-200:]})"
