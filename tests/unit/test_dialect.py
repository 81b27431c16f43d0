"""nix.dialect: the version line of each real Nix (recorded by tests/data/nix-dialects/
record.py), what the dialect says each accepts checked against what each did accept, and
the argv it builds."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.nix import dialect
from nix_push_queue.nix.dialect import Dialect, DialectError, parse_version

DATA = Path(__file__).resolve().parents[1] / "data" / "nix-dialects"
VERSIONS = sorted(p.name for p in DATA.iterdir() if (p / "version.txt").exists())
NIX = ["nix", "--extra-experimental-features", "nix-command"]


def recorded(version: str) -> tuple[Dialect, list[dict[str, Any]], dict[str, Any]]:
    d = Dialect(parse_version((DATA / version / "version.txt").read_text()))
    runs = json.loads((DATA / version / "runs.json").read_text())
    meta = json.loads((DATA / version / "post-build-hook.json").read_text())
    return d, runs, meta


def run_of(runs: list[dict[str, Any]], argv: list[str]) -> dict[str, Any]:
    matches = [r for r in runs if r["argv"] == argv]
    assert matches, f"record.py did not run {argv}"
    return matches[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_version_line(version: str) -> None:
    v = parse_version((DATA / version / "version.txt").read_text())
    assert (v.implementation, f"{v.major}.{v.minor}.{v.patch}") == ("nix", version)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_argv_we_build_is_accepted_without_warnings(version: str) -> None:
    """The path-info and config argv the dialect builds are the ones this Nix ran cleanly
    (exit 0, no deprecation warning), and each flag it leaves out was refused or deprecated."""
    d, runs, meta = recorded(version)
    top, dep = meta["built"]["top"], meta["built"]["dep"]
    chosen = run_of(runs, d.path_info_json([top, dep]))
    assert chosen["returncode"] == 0 and "warning" not in chosen["stderr"]
    config = run_of(runs, d.config_show_json())
    assert config["returncode"] == 0 and "warning" not in config["stderr"]
    for fmt in ("1", "2"):
        with_flag = run_of(runs, [*NIX, "path-info", "--json", "--json-format", fmt, top, dep])
        assert (with_flag["returncode"] == 0) is (d.path_info_json_format is not None)
    plain = run_of(runs, [*NIX, "path-info", "--json", top, dep])
    assert ("deprecated" in plain["stderr"]) is (d.path_info_json_format is not None)
    other = ["show-config"] if d.config_show == ("config", "show") else ["config", "show"]
    refused = run_of(runs, [*NIX, *other, "--json"])
    assert refused["returncode"] != 0 or "deprecated" in refused["stderr"]


@pytest.mark.parametrize("version", VERSIONS)
def test_out_paths_as_the_hook_saw_them(version: str) -> None:
    d, _, meta = recorded(version)
    out_paths = [r["OUT_PATHS"] for r in meta["runs"]]
    assert len(out_paths) == 2 and all(r["DRV_PATH"].endswith(".drv") for r in meta["runs"])
    if d.out_paths_filled:
        assert sorted(out_paths) == sorted(meta["built"].values())
    else:
        assert out_paths == ["", ""]


@pytest.mark.parametrize(("line", "impl", "numbers"), [
    # Lix and Determinate Nix as their users quote them (no binary of theirs runs here).
    ("nix (Lix, like Nix) 2.91.1\n", "lix", (2, 91, 1)),
    ("nix (Lix, like Nix) 2.90.0-beta.1-lixpre20240506-b6799ab", "lix", (2, 90, 0)),
    ("nix (Determinate Nix 3.6.2) 2.29.0", "nix", (2, 29, 0)),
    ("nix (Nix) 2.35pre20260101_abcdef0", "nix", (2, 35, 0)),
])
def test_other_version_lines(line: str, impl: str, numbers: tuple[int, int, int]) -> None:
    v = parse_version(line)
    assert (v.implementation, v.major, v.minor, v.patch) == (impl, *numbers)


def test_lix_keeps_the_2_18_spellings() -> None:
    d = Dialect(parse_version("nix (Lix, like Nix) 2.93.0"))
    assert d.path_info_json_format is None and d.config_show == ("show-config",)


@pytest.mark.parametrize("line", ["", "2.8.0", "nix version 2.8", "nix (Nix) two"])
def test_unreadable_version_lines(line: str) -> None:
    with pytest.raises(DialectError, match="cannot read the Nix version"):
        parse_version(line)


def test_argv_uses_nix_bin_dir() -> None:
    d = Dialect(parse_version("nix (Nix) 2.34.8"), "/opt/nix/bin")
    assert d.path_info_json(["/s/a"], store="file:///c", options=["--option", "x", "1"]) == [
        "/opt/nix/bin/nix", "--extra-experimental-features", "nix-command", "path-info",
        "--json", "--json-format", "2", "--store", "file:///c", "--option", "x", "1", "/s/a"]
    assert d.program("nix-store") == "/opt/nix/bin/nix-store"


def test_detect_asks_once_per_binary(tmp_path: Path) -> None:
    """A stand-in `nix` that counts its calls: the second detect is served from the cache,
    and another binary gets its own answer."""
    for name, line in (("a", "nix (Nix) 2.26.3"), ("b", "nix (Nix) 2.8.0")):
        (tmp_path / name).mkdir()
        script = tmp_path / name / "nix"
        script.write_text(f"#!/bin/sh\necho x >> {tmp_path / name / 'calls'}\necho '{line}'\n")
        script.chmod(0o755)
    env = {"PATH": os.environ["PATH"]}
    first = dialect.detect(str(tmp_path / "a"), env)
    assert dialect.detect(str(tmp_path / "a"), env) is first
    assert dialect.cached(str(tmp_path / "a"), env) is first
    assert (tmp_path / "a" / "calls").read_text() == "x\n"
    assert first.config_show == ("config", "show")
    assert dialect.detect(str(tmp_path / "b"), env).config_show == ("show-config",)


def test_detect_failure_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "nix").write_text("#!/bin/sh\necho broken >&2\nexit 3\n")
    (tmp_path / "nix").chmod(0o755)
    with pytest.raises(DialectError, match="exited 3: broken"):
        dialect.detect(str(tmp_path), {"PATH": os.environ["PATH"]})
