"""Reading a config file (YAML, JSON or Nix) into data plus a map from field to line.

Line numbers matter: a user fixing `targets[1].url` wants to jump to the line. YAML and JSON
are composed with PyYAML to learn each node's line; a `.nix` file is evaluated by the real
`nix-instantiate` and positions are asked of Nix (`builtins.unsafeGetAttrPos`) only when an
error needs one.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, ConfigProblem

FieldPath = tuple[str | int, ...]
LineLookup = Callable[[FieldPath], "int | None"]


@dataclass(frozen=True)
class Source:
    file: str
    data: Any
    line_of: LineLookup


def format_path(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def parse_path(text: str) -> FieldPath:
    """The inverse of `format_path`: "targets[1].url" -> ("targets", 1, "url")."""
    parts: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", text):
        parts.append(int(index) if index else name)
    return tuple(parts)


def read_source(path: Path, *, nix_instantiate: str = "nix-instantiate") -> Source:
    name = str(path)
    try:
        text = path.read_text("utf-8") if path.suffix != ".nix" else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(name, None, "", f"cannot read the file: {exc}")]) from exc
    if path.suffix == ".nix":
        return _read_nix(path, nix_instantiate)
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            problem = ConfigProblem(name, exc.lineno, "", f"invalid JSON: {exc.msg}")
            raise ConfigError([problem]) from exc
    elif path.suffix in (".yaml", ".yml"):
        data = _load_yaml(name, text)
    else:
        msg = "unknown config format; name the file *.yaml, *.yml, *.json or *.nix"
        raise ConfigError([ConfigProblem(name, None, "", msg)])
    return Source(name, data, _yaml_lines(text))


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: YAML silently keeps the last one."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}; keep one of them", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def _load_yaml(name: str, text: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = f"invalid YAML: {exc.problem or exc}"
        if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            # e.g. an unclosed bracket: the parser notices lines after the real mistake.
            what += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        problem = ConfigProblem(name, line, "", what)
        raise ConfigError([problem]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(name, None, "", f"invalid YAML: {exc}")]) from exc


def _yaml_lines(text: str) -> LineLookup:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        root = None

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
        for key, value in node.value:
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


def _read_nix(path: Path, nix_instantiate: str) -> Source:
    name = str(path)
    argv = [nix_instantiate, "--eval", "--strict", "--json", str(path.resolve())]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = (f"cannot evaluate the Nix file with {nix_instantiate}: {exc}; "
               "install Nix or use YAML/JSON")
        raise ConfigError([ConfigProblem(name, None, "", msg)]) from exc
    if proc.returncode != 0:
        line = _nix_error_line(proc.stderr)
        detail = proc.stderr.strip().splitlines()
        msg = "nix-instantiate failed: " + (detail[0] if detail else f"exit {proc.returncode}")
        raise ConfigError([ConfigProblem(name, line, "", msg)])
    data = json.loads(proc.stdout)
    return Source(name, data, _nix_lines(path, nix_instantiate))


def _nix_error_line(stderr: str) -> int | None:
    match = re.search(r"at .*?:(\d+):\d+", stderr)
    return int(match.group(1)) if match else None


def _nix_lines(path: Path, nix_instantiate: str) -> LineLookup:
    def line_of(field: FieldPath) -> int | None:
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
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            value = json.loads(proc.stdout) if proc.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
            return None
        return value if isinstance(value, int) else None

    return line_of
