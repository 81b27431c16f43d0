"""Quoting values in errors (redact.py) and the commands' number-of-seconds options."""

from __future__ import annotations

import pytest

from nix_push_queue import cli
from nix_push_queue.config.redact import excerpt, excerpt_read, redact_text

SECRET = "root:$6$salt$" + "Zq9" * 30 + ":19000:0:99999:7:::"


def test_short_values_are_quoted_whole() -> None:
    assert excerpt("htp://cache") == "'htp://cache'"
    assert excerpt(3.5) == "3.5"


def test_long_or_multiline_values_show_a_prefix_and_their_size() -> None:
    shown = excerpt(SECRET + "\nuser:x:1\n")
    assert shown == "'root:$6$'... (132 characters, 3 lines)"
    assert excerpt("a\nb") == "'a?b'... (3 characters, 2 lines)"
    assert excerpt(["x"] * 1000) == "a list of 1000"
    assert excerpt({"k": SECRET}) == "a mapping of 1 key(s)"


def test_values_that_may_come_from_files_show_only_the_prefix() -> None:
    assert excerpt_read("short-but-secret") == "'short-bu'... (16 characters)"
    assert excerpt_read("file://") == "'file://'"


def test_other_programs_messages_keep_the_error_line_and_cut_long_words() -> None:
    stderr = ("warning: the group 'nixbld' does not exist\n"
              f"error: {SECRET}\n\n       at /home/u/a-long-directory-name/config.nix:3:9:\n")
    assert redact_text(stderr) == "error: root:$6$...(122 characters)"
    where = "error: undefined variable 'x' at /home/u/a-rather-long-directory-name/config.nix:3:9:"
    assert redact_text(where) == where
    assert len(redact_text("error: " + "word " * 200)) <= 243


@pytest.mark.parametrize("argv", [
    ["wait", "--socket", "/nonexistent.sock", "--timeout", "nan"],
    ["wait", "--socket", "/nonexistent.sock", "--timeout", "inf"],
    ["wait", "--socket", "/nonexistent.sock", "--timeout", "-1"],
    ["push", "--socket", "/nonexistent.sock", "--wait", "--timeout", "NaN", "/nix/store/x"],
    ["verify", "--timeout=-inf"],
    ["daemon", "--stop-grace", "nan"],
    ["validate", "--eval-timeout", "nan", "c.yaml"],
    ["generate", "--eval-timeout", "infinity", "c.yaml", "--out", "o"],
])
def test_every_seconds_option_refuses_what_is_not_a_finite_duration(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv, env={})
    assert info.value.code == 2
    assert "not a finite number of seconds" in capsys.readouterr().err


def test_no_command_parses_seconds_with_plain_float() -> None:
    parser = cli.build_parser()
    loose = []
    for name, sub in parser._subparsers._group_actions[0].choices.items():  # type: ignore[union-attr]
        loose += [f"{name} {a.option_strings}" for a in sub._actions if a.type is float]
    assert loose == []


def test_eval_timeout_help_names_the_real_default() -> None:
    from nix_push_queue.commands.validate import EVAL_TIMEOUT_HELP
    from nix_push_queue.config.limits import EVAL_TIMEOUT

    assert f"(default {EVAL_TIMEOUT:g})" in EVAL_TIMEOUT_HELP


def test_generator_errors_quote_values_in_part() -> None:
    from nix_push_queue.generate.escape import Unrepresentable

    message = str(Unrepresentable("secret-" + "x" * 200 + "\x01", "a systemd unit", "why"))
    assert message == "'secret-x'... (208 characters) cannot be written into a systemd unit: why"
