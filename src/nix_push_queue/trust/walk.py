"""What the kernel walks through to reach a file: every directory on the way, symlinks
followed (a link into a user's home brings that home in), and the real file at the end.
Also the two things read from programs: a `#!` line, and the programs a sh script `exec`s.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from dataclasses import dataclass

_EXPANSION = re.compile(r"\$\{[^}]*\}")
_COMMENT = re.compile(r"(^|\s)#.*$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
MAX_LINKS = 40  # as the kernel's ELOOP limit
SHELLS = frozenset({"sh", "bash", "dash"})


@dataclass(frozen=True)
class Chain:
    """`dirs`: every real directory walked through, in order, "/" first; `target`: the real
    file (None when the path does not exist: then `dirs` ends at its nearest ancestor)."""

    dirs: tuple[str, ...]
    target: str | None
    missing: str | None = None  # the first component that does not exist


def resolve(path: str) -> Chain:
    """Walk `path` (absolute) as the kernel would, following every symlink."""
    dirs: list[str] = ["/"]
    pending = [p for p in path.split("/") if p not in ("", ".")]
    current = "/"
    links = 0
    while pending:
        name = pending.pop(0)
        if name == "..":
            current = os.path.dirname(current)
            continue
        step = os.path.join(current, name)
        try:
            st = os.lstat(step)
        except FileNotFoundError:
            return Chain(tuple(dirs), None, step)
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise OSError(f"{path}: too many levels of symbolic links")
            target = os.readlink(step)
            if target.startswith("/"):
                current = "/"
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        if pending:
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(f"{step} is not a directory")
            current = step
            if step not in dirs:
                dirs.append(step)
        else:
            return Chain(tuple(dirs), step)
    return Chain(tuple(dirs[:-1]) or ("/",), current)


def shebang(path: str) -> list[str] | None:
    """The interpreter and its arguments from a `#!` line, or None (a binary, no line)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    # The kernel passes everything after the interpreter as one argument.
    interpreter, _, rest = line.partition(" ")
    return [interpreter, rest.strip()] if rest.strip() else [interpreter] if interpreter else None


def _lines(text: str) -> list[list[str]]:
    """The script's lines as shlex reads them (continued lines joined). A `#` starts a
    comment only at the start of a word, as in sh (`${x#y}` is no comment); a line shlex
    cannot read is split on blanks."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        # ${...} expansions may hold blanks and `#` (`${outs# }`): one opaque word part.
        code = _COMMENT.sub("", _EXPANSION.sub("${}", line))
        try:
            out.append(shlex.split(code))
        except ValueError:
            out.append(code.split())
    return out


def commands(text: str) -> list[list[str]]:
    """The commands a sh script runs by absolute path at the start of a line: the words of
    each such line, after `VAR=value` assignments and `exec` (with `-a NAME`), as shlex
    reads them. A program named elsewhere on a line is among `absolute_words`."""
    found: list[list[str]] = []
    for line in _lines(text):
        words = list(line)
        while words and _ASSIGNMENT.match(words[0]):
            del words[0]
        if words and words[0] == "exec":
            del words[0]
            while words and words[0].startswith("-"):
                del words[: 2 if words[0] == "-a" else 1]
        if words and words[0].startswith("/"):
            found.append(words)
    return found


def absolute_words(text: str) -> list[str]:
    """Every word of a sh script that is an absolute path (outside comments): the programs
    it runs by absolute path are among them (the caller keeps the executable files)."""
    found: list[str] = []
    for words in _lines(text):
        for word in words:
            for piece in word.split("="):
                part = piece.lstrip("$(`{")  # `x=$(/usr/bin/head ...)`
                if part.startswith("/") and part not in found:
                    found.append(part)
    return found


def is_shell(interpreter: list[str]) -> bool:
    name = os.path.basename(interpreter[0])
    if name == "env" and len(interpreter) > 1:
        name = interpreter[1].split()[0]
    return name in SHELLS


def is_python(program: str) -> bool:
    return os.path.basename(program).startswith("python")
