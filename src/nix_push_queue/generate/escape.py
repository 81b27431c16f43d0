"""Quoting for the formats we render: systemd unit settings, /bin/sh, nix.conf.

Each is a jinja2 filter. Where a value cannot be written into a format at all, the filter
raises `Unrepresentable`, which `generate` turns into a config error naming the field.
"""

from __future__ import annotations

import re
import shlex

from ..config.redact import excerpt

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NEEDS_QUOTES = re.compile(r"[\s\"'\\;]")


class Unrepresentable(ValueError):
    """A value that the target format has no way to spell."""

    def __init__(self, value: str, fmt: str, why: str) -> None:
        self.value = value
        self.fmt = fmt
        self.why = why
        super().__init__(f"{excerpt(value)} cannot be written into {fmt}: {why}")


def _no_control(value: str, fmt: str) -> str:
    if _CONTROL.search(value):
        raise Unrepresentable(value, fmt, "it contains a control character")
    return value


def sd_plain(value: object) -> str:
    """A setting systemd takes verbatim after expanding specifiers (ListenStream=, the path
    of LoadCredential=): only `%` needs escaping. Surrounding whitespace would be stripped."""
    text = _no_control(str(value), "a systemd unit")
    if text != text.strip():
        raise Unrepresentable(text, "a systemd unit", "it starts or ends with whitespace")
    return text.replace("%", "%%")


def _sd_word(text: str) -> str:
    if not text or _NEEDS_QUOTES.search(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def sd_word(value: object) -> str:
    """One word of a space-separated systemd list (ReadWritePaths=, StateDirectory=,
    Environment=): C-style quoted when needed, `%` doubled."""
    return _sd_word(sd_plain(value))


def sd_exec(value: object) -> str:
    """An argument of ExecStart=: like `sd_word`, and `$` doubled so it is not expanded as an
    environment variable."""
    return _sd_word(sd_plain(value).replace("$", "$$"))


def sd_exec_path(value: object) -> str:
    """The program of ExecStart=: systemd expands no variables in it (measured with
    systemd-analyze verify: `$$` stays two characters), so only quoting and `%`."""
    return sd_word(value)


def sh_word(value: object) -> str:
    """One word for /bin/sh."""
    return shlex.quote(_no_control(str(value), "a shell script"))


def nix_word(value: object) -> str:
    """One item of a nix.conf value. Nix splits values on whitespace with no quoting and
    drops everything after `#`, so such characters cannot be written at all."""
    text = _no_control(str(value), "nix.conf")
    if re.search(r"[\s#]", text) or not text:
        raise Unrepresentable(text, "nix.conf", "Nix splits values on whitespace and '#'")
    return text
