from __future__ import annotations

from pathlib import Path

import pytest

from nix_push_queue.config import load_config, load_document
from nix_push_queue.config.schema import fill_defaults, load_schema
from nix_push_queue.errors import ConfigError


def test_defaults_come_from_schema() -> None:
    config = load_document({"targets": [{"name": "a", "url": "file:///tmp/c"}]})
    schema = load_schema()
    queue_props = schema["$defs"]["queue"]["properties"]
    assert config.queue.workers == queue_props["workers"]["default"]
    assert config.queue.socket == queue_props["socket"]["default"]
    assert config.queue.retry.max_attempts == (
        schema["$defs"]["retry"]["properties"]["max_attempts"]["default"]
    )


def test_fill_defaults_keeps_given_values() -> None:
    filled = fill_defaults({"queue": {"workers": 7}})
    assert filled["queue"]["workers"] == 7
    assert filled["queue"]["retry"]["jitter"] == 0.2


def test_yaml_error_reports_file_line_and_field(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("targets:\n  - name: a\n    url: file:///x\n  - name: b\n    url: gopher://y\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.path) == (str(cfg), 5, "targets[1].url")
    assert "file://" in problem.message


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("targets: []\ntargets: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert info.value.problems[0].line == 2
    assert "duplicate key" in info.value.problems[0].message


def test_parse_path_inverts_format_path() -> None:
    from nix_push_queue.config.source import format_path, parse_path

    for text in ["targets[1].url", "queue.retry.max_delay", "nix.secret_key_files[0]", ""]:
        assert format_path(parse_path(text)) == text
    assert parse_path("targets[12].options") == ("targets", 12, "options")


def test_locate_fills_file_and_line_of_later_problems(tmp_path: Path) -> None:
    from nix_push_queue.config import load_config_source, locate
    from nix_push_queue.errors import ConfigProblem

    cfg = tmp_path / "c.yaml"
    cfg.write_text("targets:\n  - name: a\n    url: file:///x\nqueue:\n  state_dir: /srv/q\n")
    _, source = load_config_source(cfg)
    later = ConfigError([ConfigProblem("", None, "queue.state_dir", "m"),
                         ConfigProblem("command line", None, "--prefix", "n")])
    located = locate(later, source).problems
    assert (located[0].file, located[0].line) == (str(cfg), 5)
    assert (located[1].file, located[1].line) == ("command line", None)


def test_block_values_are_reported_at_their_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("# comment\ntargets:\n  name: a\n  url: file:///x\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    (problem,) = info.value.problems
    assert (problem.line, problem.path) == (2, "targets")
    assert "expected a list, found a mapping" in problem.message
