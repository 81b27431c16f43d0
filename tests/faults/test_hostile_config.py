"""Hostile and careless configs, generated per class (config_strategies.py), through the real
CLI: `validate` answers each in bounded time with a short FILE:LINE error or accepts it, never
a traceback; no spelling of a path gets past a rule; merge keys load as written; what a `.nix`
config reads is not printed; a planted manifest removes nothing; `generate --include-into`
that cannot be written leaves no tree; every seconds option refuses what is not a duration.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nix_push_queue import cli
from nix_push_queue.config import Config, load_config
from nix_push_queue.errors import ConfigError, OutputError
from nix_push_queue.generate import MARKER, GenerateOptions, generate_files
from nix_push_queue.generate.writer import MANIFEST, write_tree

from . import config_strategies as C
from .figures import FIGURES, Row

pytestmark = pytest.mark.integration

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                      HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])


class Runs:
    """Each validate run: its case and how long it took."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.count = 0
        self.slowest = 0.0
        self.started = time.monotonic()

    def record(self) -> None:
        FIGURES.record(Row(self.scenario, self.count, 0, 0, 0, 0, 0,
                           time.monotonic() - self.started))


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="npq-hostile-config-") as name:
        yield Path(name)


def validate(case: C.Case, workdir: Path, runs: Runs,
             capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    config = workdir / f"config{case.suffix}"
    config.write_text(case.text)
    started = time.monotonic()
    code = cli.main(["validate", str(config)], env={})
    took = time.monotonic() - started
    runs.count += 1
    runs.slowest = max(runs.slowest, took)
    captured = capsys.readouterr()
    assert took < 10, f"validate took {took:.1f} s"
    if case.refused_with is None:
        assert code == 0, captured.err
        return code, captured.err
    assert code == 1, f"accepted: {case.text[:300]!r}"
    assert len(captured.err) < 4000, f"{len(captured.err)} characters of error"
    first = captured.err.splitlines()[0]
    assert first.startswith(f"{config}:"), first
    assert case.refused_with in captured.err, (case.refused_with, captured.err[:500])
    return code, captured.err


def test_fuzz_unbounded_work(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = Runs("fuzz: alias bombs, depth, size")

    @FUZZ
    @given(st.one_of(C.alias_bombs(), C.deep(), C.huge()))
    def check(case: C.Case) -> None:
        _, err = validate(case, workdir, runs, capsys)
        if case.refused_with in ("expands to more than", "levels deep", "larger than"):
            assert err.split(":", 2)[1].isdigit(), f"no line: {err[:200]}"

    check()
    runs.record()
    print(f"measured: {runs.count} unbounded-work configs, slowest {runs.slowest:.2f} s")


def test_fuzz_shapes_and_numbers(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = Runs("fuzz: keys, NaN/inf, JSON duplicates")

    @FUZZ
    @given(st.one_of(C.odd_keys(), C.non_finite(), C.json_duplicates()))
    def check(case: C.Case) -> None:
        _, err = validate(case, workdir, runs, capsys)
        assert err.split(":", 2)[1].isdigit(), f"no line: {err[:200]}"

    check()
    runs.record()


def test_fuzz_path_spellings(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = Runs("fuzz: paths spelled around rules")

    @FUZZ
    @given(C.path_spellings())
    def check(case: C.Case) -> None:
        validate(case, workdir, runs, capsys)

    check()
    runs.record()


@FUZZ
@given(C.documents())
def test_fuzz_merge_keys_load_as_written(doc: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as name:
        plain, merged = Path(name) / "plain.yaml", Path(name) / "merged.yaml"
        plain.write_text(yaml.safe_dump(doc))
        merged.write_text(C.merged(doc))
        assert load_config(merged).document == load_config(plain).document


@pytest.fixture
def secret(workdir: Path) -> tuple[Path, list[str]]:
    """A file like /etc/shadow, and the parts of it that must never be printed."""
    tokens = [os.urandom(16).hex() for _ in range(3)]
    path = workdir / "shadow"
    path.write_text(f"root:$6${tokens[0]}:19000:0:99999:7:::\n{tokens[1]}\nkey:{tokens[2]}\n")
    return path, tokens


def test_fuzz_values_read_by_nix_are_not_printed(
        workdir: Path, secret: tuple[Path, list[str]],
        capsys: pytest.CaptureFixture[str]) -> None:
    path, tokens = secret
    runs = Runs("fuzz: .nix reading a secret")

    @settings(FUZZ, max_examples=12)
    @given(C.reading_nix(str(path)))
    def check(case: tuple[str, str]) -> None:
        config = workdir / "reads.nix"
        config.write_text(case[0])
        code = cli.main(["validate", str(config)], env={})
        runs.count += 1
        out = capsys.readouterr()
        assert code == 1, case
        for token in tokens:
            assert token[:8] not in out.err + out.out, (case, out.err)

    check()
    runs.record()


@FUZZ
@given(st.sampled_from(C.STRING_FIELDS), st.text(min_size=1, max_size=30),
       st.sampled_from(["", "\n", "\nmore\n"]))
def test_fuzz_long_values_written_in_yaml_are_cut(field: str, head: str, tail: str) -> None:
    token = os.urandom(40).hex()
    value = head + token + tail
    doc = {"targets": [{"name": "a", "url": "file:///srv/a", field: value}]}
    with tempfile.TemporaryDirectory() as name:
        config = Path(name) / "c.yaml"
        config.write_text(yaml.safe_dump(doc))
        try:
            load_config(config)  # e.g. secret_key_file "/..." is a fine path
        except ConfigError as exc:
            assert token[:16] not in str(exc)


@FUZZ
@given(st.data())
def test_fuzz_planted_manifest_removes_nothing(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as name:
        base = Path(name)
        root, victim = base / "out", base / "victim.txt"
        victim.write_text(f"# {MARKER}\nthe user's\n")
        entries = data.draw(st.lists(C.manifest_entries(str(victim)), min_size=1, max_size=3))
        (root / MANIFEST).parent.mkdir(parents=True)
        digest = hashlib.sha256(victim.read_bytes()).hexdigest()
        (root / MANIFEST).write_text(f"# {MARKER}\n" + "".join(f"{digest}  {e}\n"
                                                                for e in entries))
        files = generate_files(load_config_text("targets: [{name: a, url: 'file:///c'}]\n",
                                                base), GenerateOptions())
        with pytest.raises(OutputError, match="nothing was changed"):
            write_tree(root, files)
        assert victim.read_text() == f"# {MARKER}\nthe user's\n"
        assert [p.name for p in root.rglob("*") if p.is_file()] == ["generated.sha256"]


def load_config_text(text: str, directory: Path) -> Config:
    path = directory / "config.yaml"
    path.write_text(text)
    return load_config(path)


# generate refuses a hook program another user could change (docs/security.md): this
# checkout's own program, in a root-owned venv as the suite runs it.
TRUSTED_EXE = ("--executable", str(Path(sys.executable).parent / "nix-push-queue"))
INCLUDE_FAILURES = ["immutable", "conf-is-dir", "conf-is-symlink", "parent-missing",
                    "parent-is-file"]


@pytest.mark.parametrize("failure", INCLUDE_FAILURES)
@pytest.mark.parametrize("previous_tree", [False, True])
def test_include_that_cannot_be_written_leaves_the_tree_as_it_was(
        workdir: Path, failure: str, previous_tree: bool,
        capsys: pytest.CaptureFixture[str]) -> None:
    config, out, etc = workdir / "c.yaml", workdir / "out", workdir / "etc"
    config.write_text("targets: [{name: a, url: 'file:///srv/a'}]\n")
    if previous_tree:
        assert cli.main(["generate", str(config), "--out", str(out), *TRUSTED_EXE], env={}) == 0
    before = {str(p): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    config.write_text("targets: [{name: a, url: 'file:///srv/b'}]\nqueue: {workers: 3}\n")
    conf = _break(etc, failure)
    try:
        code = cli.main(["generate", str(config), "--out", str(out), "--include-into",
                         str(conf), *TRUSTED_EXE], env={})
    finally:
        subprocess.run(["chattr", "-i", str(etc)], check=False, capture_output=True)
    err = capsys.readouterr().err
    assert code == 4, err
    assert {str(p): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def _break(etc: Path, failure: str) -> Path:
    if failure == "parent-missing":
        return etc / "missing" / "nix.conf"
    if failure == "parent-is-file":
        etc.write_text("a file")
        return etc / "nix.conf"
    etc.mkdir()
    conf = etc / "nix.conf"
    if failure == "conf-is-dir":
        conf.mkdir()
    elif failure == "conf-is-symlink":
        conf.symlink_to(etc / "elsewhere.conf")
    else:
        conf.write_text("substituters =\n")
        if subprocess.run(["chattr", "+i", str(etc)], check=False).returncode != 0:
            pytest.skip("chattr +i does not work here")
    return conf


SECONDS_OPTIONS = [["wait", "--socket", "/x"], ["push", "--socket", "/x", "/nix/store/x"],
                   ["verify"], ["daemon"], ["validate", "c.yaml"], ["generate", "c.yaml"]]
FLAG = {"daemon": "--stop-grace", "validate": "--eval-timeout", "generate": "--eval-timeout"}


@FUZZ
@given(st.sampled_from(SECONDS_OPTIONS),
       st.one_of(st.floats().map(repr), st.integers(-10, 10**6).map(str),
                 st.sampled_from(["nan", "NaN", "-nan", "inf", "+inf", "-Infinity", "INFINITY",
                                  "1e999", "-1e400", "1e308", " 2 ", "1_000", "0x10", "", "-0",
                                  "\u0663"])))
def test_fuzz_seconds_options(argv: list[str], text: str) -> None:
    flag = FLAG.get(argv[0], "--timeout")
    try:
        expected = float(text)
        ok = math.isfinite(expected) and expected >= 0
    except ValueError:
        ok = False
    parser = cli.build_parser()
    if ok:
        args = parser.parse_args([*argv, f"{flag}={text}"])
        assert getattr(args, flag.lstrip("-").replace("-", "_")) == float(text)
    else:
        with pytest.raises(SystemExit):
            parser.parse_args([*argv, f"{flag}={text}"])


def test_validate_time_and_memory_on_extreme_inputs(workdir: Path) -> None:
    """The figures of the report: wall time and peak RSS of a `validate` process."""
    npq = shutil.which("nix-push-queue") or str(Path(sys.executable).parent / "nix-push-queue")
    item = "    - '*-pattern-number-0123456789'\n"
    head = "targets: []\nfilters:\n  exclude:\n"
    cases = {
        "largest accepted (1 MiB YAML)": (head + item * ((C.MAX_BYTES - 100) // len(item)),
                                          ".yaml", 0),
        "largest accepted (1 MiB JSON)": (json.dumps({"targets": [], "filters": {
            "exclude": ["*-p-0123456789"] * ((C.MAX_BYTES - 100) // 18)}}), ".json", 0),
        "20 MiB YAML": (head + item * (20 * C.MAX_BYTES // len(item)), ".yaml", 1),
        "30 levels (under the limit)": ("targets: []\nx-deep: " + "[" * 30 + "]" * 30 + "\n",
                                        ".yaml", 1),
        "JSON 100,000 deep": ('{"targets": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
                              ".json", 1),
        "YAML 20,000 deep": ("targets: " + "[" * 20_000 + "]" * 20_000 + "\n", ".yaml", 1),
        "alias bomb 9x9 (382 bytes)": (_bomb(9), ".yaml", 1),
        "alias bomb 12x9": (_bomb(12), ".yaml", 1),
        ".nix that never ends (--eval-timeout 2)": (SPIN, ".nix", 1),
    }
    timer = shutil.which("time", path="/usr/bin") or pytest.skip("needs /usr/bin/time")
    for label, (text, suffix, want) in cases.items():
        config = workdir / f"case{suffix}"
        config.write_text(text)
        # GNU time forks from a small process: a child forked from pytest would report
        # pytest's own RSS as its peak.
        figures = workdir / "time.txt"
        proc = subprocess.run([timer, "-o", str(figures), "-f", "%e %M", npq, "validate",
                               "--eval-timeout", "2", str(config)], capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == want, (label, proc.stderr[:300])
        took, peak_kib = figures.read_text().split()[-2:]
        peak = int(peak_kib) / 1024
        print(f"measured: validate {label}: {float(took):.2f} s, peak RSS {peak:.0f} MiB "
              f"({len(text.encode()):,} bytes){': ' + proc.stderr[:90] if proc.stderr else ''}")
        assert float(took) < 10, (label, took)  # loaded machine; idle: see the report
        # nix-instantiate counts as our child: its peak is bounded by config.limits.EVAL_MEMORY.
        assert peak < (1100 if suffix == ".nix" else 200), (label, peak)


# About 10^9 additions in constant memory: runs for minutes.
SPIN = ("let l = builtins.genList (x: x) 1000; count = f: builtins.foldl' (a: x: a + f x) 0 l; "
        'in { targets = [ { name = "a"; url = "file:///srv/a"; '
        "upload_timeout = count (x: count (y: count (z: 1))); } ]; }")


def _bomb(levels: int) -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    names = [chr(ord("a") + i) for i in range(levels)]
    for prev, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + f"\ntargets: *{names[-1]}\n"
