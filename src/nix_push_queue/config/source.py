"""Reading a config file (YAML, JSON or Nix) into data plus a map from field to line.

Line numbers matter: a user fixing `targets[1].url` wants to jump to the line. YAML and JSON
are composed with PyYAML to learn each node's line; a `.nix` file is evaluated by the real
`nix-instantiate` and positions are asked of Nix (`builtins.unsafeGetAttrPos`) only when an
error needs one.

Every format passes the same bounds (`limits`) before anything walks the data: size, depth,
expanded values, and numbers that are finite. JSON objects may not repeat a key, as YAML
mappings may not.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, ConfigProblem
from . import yamlload
from .limits import (
    EVAL_MEMORY,
    EVAL_TIMEOUT,
    MAX_BYTES,
    TOO_BIG,
    TOO_DEEP,
    data_problems,
    json_depth_problem,
)
from .nixeval import run_bounded
from .redact import excerpt, redact_text

FieldPath = tuple[str | int, ...]
LineLookup = Callable[[FieldPath], "int | None"]


@dataclass(frozen=True)
class Source:
    file: str
    data: Any
    line_of: LineLookup
    # A `.nix` config computes its values, maybe from files: errors quote them only in part.
    computed: bool = False


def format_path(path: FieldPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        # A key a `.nix` config computed (say, from a file) is quoted only in part.
        name = part if _PLAIN_KEY.fullmatch(part) else excerpt(part)
        out += f".{name}" if out else name
    return out


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def parse_path(text: str) -> FieldPath:
    """The inverse of `format_path`: "targets[1].url" -> ("targets", 1, "url")."""
    parts: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", text):
        parts.append(int(index) if index else name)
    return tuple(parts)


def read_source(path: Path, *, nix_instantiate: str = "nix-instantiate",
                eval_timeout: float = EVAL_TIMEOUT) -> Source:
    name = str(path)
    if path.suffix == ".nix":
        return _read_nix(path, nix_instantiate, eval_timeout)
    if path.suffix not in (".json", ".yaml", ".yml"):
        msg = "unknown config format; name the file *.yaml, *.yml, *.json or *.nix"
        raise ConfigError([ConfigProblem(name, None, "", msg)])
    text = _read_text(path)
    if path.suffix == ".json":
        return _json_source(name, text, _lazy_lines(text))
    data, root = _load_yaml(name, text)
    line_of = _node_lines(root)
    _refuse_problems(name, data, line_of, {})
    return Source(name, data, line_of)


def _problem(name: str, line: int | None, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(name, line, "", message)])


def _read_text(path: Path) -> str:
    """The file's text, refusing more than MAX_BYTES (or a device or pipe, which may never
    end) without reading further."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _problem(name, None, "not a regular file; give the config file itself")
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _problem(name, None, f"cannot read the file: {exc.strerror}") from exc
    if len(raw) > MAX_BYTES:
        raise _problem(name, raw.count(b"\n", 0, MAX_BYTES) + 1, TOO_BIG)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _problem(name, line, "the file is not UTF-8 text") from exc


def _json_source(name: str, text: str, line_of: LineLookup) -> Source:
    deep = json_depth_problem(text)
    if deep is not None:
        raise _problem(name, *deep)
    duplicates: dict[int, list[str]] = {}

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                duplicates.setdefault(id(obj), []).append(key)
            obj[key] = value
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise _problem(name, exc.lineno, f"invalid JSON: {exc.msg}") from exc
    except ValueError as exc:  # an integer of more digits than int() converts
        raise _problem(name, None, "invalid JSON: a number has too many digits") from exc
    _refuse_problems(name, data, line_of, duplicates)
    return Source(name, data, line_of)


def _refuse_problems(name: str, data: Any, line_of: LineLookup,
                     duplicates: dict[int, list[str]]) -> None:
    found = data_problems(data, duplicates)
    if found:
        raise ConfigError([ConfigProblem(name, line_of(f.path), format_path(f.path), f.message)
                           for f in found])


def _load_yaml(name: str, text: str) -> tuple[Any, yaml.Node | None]:
    try:
        return yamlload.load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        if isinstance(exc, yamlload.Refused):
            raise _problem(name, line, str(exc.problem)) from exc
        if "maximum nesting depth" in str(exc.problem):  # libyaml's own limit, 1,000 levels
            raise _problem(name, line, TOO_DEEP) from exc
        what = f"invalid YAML: {exc.problem or exc}"
        if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            # e.g. an unclosed bracket: the parser notices lines after the real mistake.
            what += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        raise _problem(name, line, what) from exc
    except yaml.YAMLError as exc:
        raise _problem(name, None, f"invalid YAML: {exc}") from exc


def _lazy_lines(text: str) -> LineLookup:
    """Line lookups for JSON: PyYAML reads JSON too, but only an error needs it to."""
    cache: list[LineLookup] = []

    def line_of(path: FieldPath) -> int | None:
        if not cache:
            cache.append(_node_lines(yamlload.compose(text)))
        return cache[0](path)

    return line_of


def _node_lines(root: yaml.Node | None) -> LineLookup:
    def line_of(path: FieldPath) -> int | None:
        node, best = root, None
        if node is not None:
            best = node.start_mark.line + 1
        for part in path:
            found = _child(node, part)
            if found is None:
                break
            node, best = found
        return best

    return line_of


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node, int] | None:
    """The child at `part` and the line that best shows it to a user."""
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        # The last match: merged keys come first, the mapping's own ones (which win) after.
        for key, value in reversed(node.value):
            if key.value == part:
                # A block collection starts on the line below its key, at its first child:
                # the key's line names the field. A scalar or [flow] value is its own line.
                block = not isinstance(value, yaml.ScalarNode) and not value.flow_style
                mark = key.start_mark if block or not _has_content(value) else value.start_mark
                return value, mark.line + 1
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        child: yaml.Node = node.value[part]
        return child, child.start_mark.line + 1
    return None


def _has_content(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) or bool(node.value)


def _read_nix(path: Path, nix_instantiate: str, timeout: float) -> Source:
    name = str(path)
    argv = [nix_instantiate, "--eval", "--strict", "--json", str(path.resolve())]
    try:
        result = run_bounded(argv, timeout=timeout)
    except OSError as exc:
        raise _problem(name, None, f"cannot evaluate the Nix file with {nix_instantiate}: "
                       f"{exc.strerror}; install Nix or use YAML/JSON") from exc
    if result.problem is not None:
        raise _problem(name, None, f"nix-instantiate {result.problem} and was stopped; a "
                       "config must evaluate quickly to a small value: look for a loop, a "
                       "large import or a large generated list")
    stderr = result.stderr.decode("utf-8", "replace")
    if result.returncode != 0:
        detail = redact_text(stderr) or f"exit {result.returncode}"
        if "out of memory" in detail:
            detail += f" (a config may use {EVAL_MEMORY // 1024**2} MiB while it evaluates)"
        raise _problem(name, _nix_error_line(stderr), f"nix-instantiate failed: {detail}")
    source = _json_source(name, result.stdout.decode("utf-8", "replace"),
                          _nix_lines(path, nix_instantiate, timeout))
    return Source(name, source.data, source.line_of, computed=True)


def _nix_error_line(stderr: str) -> int | None:
    match = re.search(r"at .*?:(\d+):\d+", stderr)
    return int(match.group(1)) if match else None


def _nix_lines(path: Path, nix_instantiate: str, timeout: float) -> LineLookup:
    # Each lookup evaluates the file again: all of them together get one evaluation's time.
    budget_end = time.monotonic() + timeout

    def line_of(field: FieldPath) -> int | None:
        left = budget_end - time.monotonic()
        if left <= 0:
            return None
        # Nix keeps positions of attributes, not of list elements: walk to the deepest
        # attribute name on the path and ask for its position in its parent set.
        expr = f"import {json.dumps(str(path.resolve()))}"
        last: tuple[str, str] | None = None
        for part in field:
            if isinstance(part, int):
                expr = f"(builtins.elemAt ({expr}) {part})"
            else:
                last = (expr, part)
                expr = f"(({expr}).{json.dumps(part)})"
        if last is None:
            return 1
        parent, attr = last
        query = f"(builtins.unsafeGetAttrPos {json.dumps(attr)} ({parent})).line or null"
        argv = [nix_instantiate, "--eval", "--json", "--expr", query]
        try:
            result = run_bounded(argv, timeout=left)
            value = json.loads(result.stdout) if result.returncode == 0 else None
        except (OSError, ValueError):
            return None
        return value if isinstance(value, int) else None

    return line_of
