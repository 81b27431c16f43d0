"""Quoting values in error messages without leaking what a config read.

A `.nix` config can read any file its evaluator may (`builtins.readFile /etc/shadow`), and
errors go to terminals, CI logs and bug reports. So a value of a `.nix` config, or read from a
file a config names, is shown by its first PREFIX characters and its size. A value written in a
YAML or JSON file, which can read nothing else, is quoted in full when it is short and on one
line, which is what a mistyped URL or name looks like. Messages of other programs (nix-instantiate)
are cut the same way, word by word.
"""

from __future__ import annotations

from typing import Any

SHORT = 64  # a value up to this long, on one line, is quoted whole
PREFIX = 8  # of a longer one, this many characters are shown
WORD = 24  # in another program's message, longer words are cut
MESSAGE = 240  # and the message is cut here


def excerpt(value: Any, short: int = SHORT) -> str:
    """`repr`-like, but never more than a short part of a long or multi-line string; lists
    and mappings are described, not printed."""
    if isinstance(value, str):
        if len(value) <= short and value.isprintable():
            return repr(value)
        lines = value.count("\n") + 1
        extent = f"{len(value)} characters" + (f", {lines} lines" if lines > 1 else "")
        head = "".join(c if c.isprintable() else "?" for c in value[:PREFIX])
        return f"{head!r}... ({extent})"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    return repr(value)


def excerpt_read(value: Any) -> str:
    """`excerpt` of a value that may have been read from a file (any value of a `.nix`
    config): only as much as PREFIX shows."""
    return excerpt(value, PREFIX)


def redact_text(text: str) -> str:
    """The first `error:` line of another program's message (else its first line), with long
    words cut (they are where a value read from a file would show), and the whole cut to
    MESSAGE characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = next((line for line in lines if line.startswith("error:")), lines[0] if lines else "")
    words = [w if len(w) <= WORD or _is_path(w) else f"{w[:PREFIX]}...({len(w)} characters)"
             for w in first.split()]
    line = " ".join(words)
    return line if len(line) <= MESSAGE else line[:MESSAGE] + "..."


def _is_path(word: str) -> bool:
    # Where Nix points at the mistake: "/home/u/cfg.nix:3:9", "«/x/config.nix»".
    bare = word.strip("'\"`()[],«»")
    return bare.startswith(("/", "./", "<")) and all(
        c.isalnum() or c in "/._-+:<>@" for c in bare)
