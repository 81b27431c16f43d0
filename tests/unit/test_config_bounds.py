"""The loader's bounds and JSON-only data: every careless or hostile shape of a YAML or JSON
config is a ConfigError at a line, fast, never a traceback (source.py, yamlload.py, limits.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nix_push_queue.config import load_config, yamlload
from nix_push_queue.config.limits import MAX_BYTES, MAX_DEPTH, MAX_NODES
from nix_push_queue.errors import ConfigError, ConfigProblem

TARGET = "targets:\n  - name: a\n    url: file:///srv/a\n"


def refused(tmp_path: Path, text: str, suffix: str = ".yaml") -> ConfigProblem:
    cfg = tmp_path / f"c{suffix}"
    cfg.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert time.monotonic() - started < 5
    assert len(str(info.value)) < 1000, "the error must be short"
    return info.value.problems[0]


def alias_bomb(levels: int) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\ntargets: *l{levels - 1}\n"


@pytest.mark.parametrize("levels", [6, 9, 12])
def test_alias_bomb_is_refused_where_it_explodes(tmp_path: Path, levels: int) -> None:
    problem = refused(tmp_path, alias_bomb(levels))
    # 9**6 > 100,000: the sixth list (line 6) is where the expansion passes the limit.
    assert problem.line == 6
    assert f"{MAX_NODES:,} values" in problem.message


def test_alias_that_contains_itself_is_refused(tmp_path: Path) -> None:
    problem = refused(tmp_path, "x: 1\ntargets: &a [*a]\n")
    assert (problem.line, "cannot contain itself" in problem.message) == (2, True)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 20_000])
def test_deep_yaml_is_refused_not_recursion_error(tmp_path: Path, depth: int) -> None:
    for text in ("x: 1\ntargets: " + "[" * depth + "]" * depth + "\n",
                 # Block style indents: 1,000 levels are already half a megabyte.
                 "x: 1\ntargets:\n" + "".join(" " * i + "- \n" for i in range(1, 1000))):
        problem = refused(tmp_path, text)
        assert problem.line is not None and problem.line >= 2
        assert f"more than {MAX_DEPTH} levels" in problem.message


def test_depth_through_aliases_counts(tmp_path: Path) -> None:
    half = MAX_DEPTH // 2 + 2
    text = f"a: &a {'[' * half}1{']' * half}\ntargets: {'[' * half}*a{']' * half}\n"
    assert "levels deep" in refused(tmp_path, text).message


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_json_is_refused_not_recursion_error(tmp_path: Path, depth: int) -> None:
    text = '{"targets": [],\n "x": ' + "[" * depth + '"]]"' + "]" * depth + "}"
    problem = refused(tmp_path, text, ".json")
    assert (problem.line, f"more than {MAX_DEPTH} levels" in problem.message) == (2, True)


def test_json_brackets_in_strings_do_not_count(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text('{"targets": [], "filters": {"exclude": ["' + "[{" * 100 + '"]}}')
    assert load_config(cfg).targets == ()


def test_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    text = TARGET + "filters:\n  exclude:\n" + "    - 'x'\n" * (MAX_BYTES // 10)
    problem = refused(tmp_path, text)
    assert "larger than 1024 KiB" in problem.message
    assert problem.line is not None and problem.line > 3


def test_a_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(fifo)


@pytest.mark.parametrize("key, message", [
    ("? [a, b]\n: 1", "complex key"),
    ("? {a: 1}\n: 1", "complex key"),
    ("1: x", "key '1' is read as 1"),
    ("on: x", "key 'on' is read as True"),
    ("null: x", "is read as None"),
])
def test_keys_that_are_not_names_are_refused(tmp_path: Path, key: str, message: str) -> None:
    problem = refused(tmp_path, f"{TARGET}{key}\nqueue: {{}}\n")
    assert (problem.line, message in problem.message) == (4, True), problem


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.Inf", "+.INF", "1.0e+400",
                                   "!!float nan"])
def test_yaml_non_finite_numbers_are_refused(tmp_path: Path, value: str) -> None:
    problem = refused(tmp_path, f"{TARGET}    upload_timeout: {value}\n")
    assert (problem.line, problem.path) == (4, "targets[0].upload_timeout")
    assert "not a finite number" in problem.message


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
def test_json_non_finite_numbers_are_refused(tmp_path: Path, value: str) -> None:
    text = '{"targets": [],\n "queue": {"retry":\n {"max_delay": ' + value + "}}}"
    problem = refused(tmp_path, text, ".json")
    assert (problem.line, problem.path) == (3, "queue.retry.max_delay")


def test_json_duplicate_keys_are_refused_at_the_second(tmp_path: Path) -> None:
    text = '{"targets": [],\n "queue": {"workers": 2,\n   "workers": 3}}'
    problem = refused(tmp_path, text, ".json")
    assert (problem.line, problem.path) == (3, "queue.workers")
    assert "duplicate key 'workers'" in problem.message


@pytest.mark.parametrize("text, suffix", [
    ('{"targets": [], "queue": {"workers": ' + "9" * 5000 + "}}", ".json"),
    ("targets: []\nqueue: {workers: " + "9" * 5000 + "}\n", ".yaml"),
    ("targets: !!set {a, b}\n", ".yaml"),
    ("targets: !!binary aGVsbG8=\n", ".yaml"),
    ("targets: !!omap [a: 1]\n", ".yaml"),
    ("targets: !!python/object:os.system {}\n", ".yaml"),
])
def test_values_json_cannot_hold_are_errors(tmp_path: Path, text: str, suffix: str) -> None:
    refused(tmp_path, text, suffix)


def test_merge_keys_work_and_own_keys_win(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("x-defaults: &d {url: 'file:///srv/a', compression: xz}\n"
                   "targets:\n  - <<: *d\n    name: a\n"
                   "  - <<: [*d, {priority: 5}]\n    name: b\n    url: file:///srv/b\n"
                   "    substitute: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    # x-defaults is unknown: reported at its line; the merges themselves were accepted.
    assert [(p.line, p.path) for p in info.value.problems] == [(1, "x-defaults")]
    text = ("targets:\n  - &a {name: a, url: 'file:///srv/a', compression: xz}\n"
            "  - <<: *a\n    name: b\n    url: file:///srv/b\n    compression: zstd\n")
    cfg.write_text(text)
    a, b = load_config(cfg).targets
    assert (a.compression, b.compression, b.url) == ("xz", "zstd", "file:///srv/b")
    problem = refused(tmp_path, text + "    name: c\n")
    assert (problem.line, "duplicate key 'name'" in problem.message) == (7, True)


def test_merged_field_errors_point_at_the_overriding_key(tmp_path: Path) -> None:
    text = ("targets:\n  - &a {name: a, url: 'file:///srv/a'}\n"
            "  - <<: *a\n    url: gopher://b\n")
    problem = refused(tmp_path, text)
    assert (problem.line, problem.path) == (4, "targets[1].url")


def test_timestamps_stay_the_text_written(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("targets:\n  - name: 2024-01-01\n    url: file:///srv/a\n")
    assert load_config(cfg).targets[0].name == "2024-01-01"


@pytest.mark.parametrize("loader", yamlload.LOADERS, ids=lambda c: c.__name__)
def test_libyaml_and_pure_python_parsers_agree(loader: type[Any]) -> None:
    for text, problem in [(alias_bomb(9), "values"), ("x: " + "[" * 100 + "]" * 100, "deep"),
                          ("a: &a [*a]\n", "itself"), ("? [a]\n: 1\n", "complex key"),
                          ("a: 1\na: 2\n", "duplicate key")]:
        with pytest.raises(yaml.YAMLError) as info:
            yamlload.load(text, loader)
        assert problem in str(info.value), (loader, text[:20], info.value)
    data, root = yamlload.load("a: &a {x: 1, y: 2}\nb:\n  <<: *a\n  y: 3\n", loader)
    assert data == {"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 3}}
    assert root is not None and root.value[1][1].value[-1][0].start_mark.line == 3


def test_in_memory_documents_are_checked_as_files_are() -> None:
    from nix_push_queue.config import load_document

    doc = {"targets": [{"name": "a", "url": "file:///srv/a", "upload_timeout": float("nan")}]}
    with pytest.raises(ConfigError, match=r"targets\[0\]\.upload_timeout: is not a finite"):
        load_document(doc)
