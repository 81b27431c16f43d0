"""Everything root runs for the post-build-hook: the wrapper, what it `exec`s, the `#!`
interpreters (followed through symlinks and through sh scripts such as Nix's makeWrapper
wrappers), and for Python the directories the hook's interpreter imports the package and its
dependencies from, with every directory above each."""

from __future__ import annotations

import os

from . import pyenv, rules, walk
from .checker import Checker

MAX_DEPTH = 4  # wrapper -> program -> its interpreter (-> a wrapped script -> ...)


def check_wrapper(checker: Checker, wrapper: str) -> None:
    """The post-build-hook file as nix.conf names it, and what it runs."""
    _program(checker, [wrapper], "the post-build-hook", depth=0)


def check_program(checker: Checker, command: list[str]) -> None:
    """A command as the wrapper would run it (e.g. the executable given to `generate`)."""
    _program(checker, command, "the hook's executable", depth=1)


def check_wrapper_text(checker: Checker, text: str) -> None:
    """A wrapper about to be written (generate): its `#!` interpreter and what it runs."""
    interpreter = text[2:].split("\n", 1)[0].split() if text.startswith("#!") else []
    what = "the post-build-hook"
    if interpreter and checker.path(interpreter[0], rules.code, f"the interpreter of {what}",
                                    missing_ok=False) is not None:
        _shell(checker, text, what, depth=0)


def _shell(checker: Checker, text: str, what: str, depth: int) -> None:
    """What a sh script runs: the commands that start a line (which must exist), and any
    other executable file it names by absolute path (e.g. `... || /usr/bin/mkdir -p`)."""
    runs = f"a program {what} runs"
    execs = walk.commands(text)
    for inner in execs:
        hook = depth == 0 and "hook" in inner[1:4]  # `PROGRAM hook`, `PYTHON -m PKG hook`
        _program(checker, inner, "the hook's executable" if hook else runs, depth + 1)
    for word in walk.absolute_words(text):
        if all(word != c[0] for c in execs) and _executable(word):
            _program(checker, [word], runs, depth + 1)


def _refuse(checker: Checker, path: str, what: str, problem: str, fix: str) -> None:
    checker.findings.append(rules.Finding(path, what, "-", "-", problem, fix, "hook"))


def _program(checker: Checker, command: list[str], what: str, depth: int) -> None:
    program = command[0]
    if not program.startswith("/"):
        _refuse(checker, program, what, "not an absolute path: root's PATH under nix-daemon "
                "decides what runs", "use an absolute path")
        return
    real = checker.path(program, rules.code, what, missing_ok=False)
    if real is None or depth >= MAX_DEPTH:
        return
    if walk.is_python(real):  # `python -m nix_push_queue ...`
        # Run as named: a venv's python finds its pyvenv.cfg from the path it was started by.
        _python(checker, [program], [], what)
        return
    interpreter = walk.shebang(real)
    if interpreter is not None:
        _interpreted(checker, real, interpreter, what, depth)
    # else a binary: its file and directories were the whole of it


def _interpreted(checker: Checker, script: str, interpreter: list[str], what: str,
                 depth: int) -> None:
    if os.path.basename(interpreter[0]) == "env":
        _refuse(checker, script, what, f"its interpreter is found through PATH "
                f"(`#!{' '.join(interpreter)}`), which root's environment under nix-daemon "
                "decides", "use an absolute interpreter in the `#!` line (pip's console "
                "scripts have one)")
        return
    interp_what = f"the interpreter of {what}"
    interp_real = checker.path(interpreter[0], rules.code, interp_what, missing_ok=False)
    if interp_real is None:
        return
    if walk.is_shell(interpreter):
        try:
            with open(script, encoding="utf-8", errors="replace") as handle:
                text = handle.read(1 << 20)
        except OSError as exc:
            checker.notes.append(f"{script}: cannot be read: {exc.strerror}")
            return
        _shell(checker, text, what, depth)
    elif walk.is_python(interp_real):
        _python(checker, interpreter, [script], interp_what)


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _python(checker: Checker, interpreter: list[str], args: list[str], what: str) -> None:
    """The import directories as `interpreter` sees them; only asked once it passed."""
    named = (interpreter[0], os.path.realpath(interpreter[0]))
    if any(p == f.path or p.startswith(f.path.rstrip("/") + "/")
           for f in checker.findings for p in named):
        checker.notes.append(f"{interpreter[0]}: not run to find its import directories, "
                             "since it failed the check")
        return
    try:
        dirs = pyenv.import_dirs(interpreter)
    except pyenv.ProbeError as exc:
        checker.notes.append(f"cannot ask {interpreter[0]} where it imports from: {exc}")
        return
    script_dirs = [os.path.dirname(a) for a in args[:1]]
    for entry in [*script_dirs, *dirs.path]:
        checker.entries(entry, f"a directory {what} imports from")
    for package in dirs.packages:
        checker.tree(package, f"the package directory {what} imports")
