"""Config loading: read (YAML/JSON/Nix), validate (schema, then semantic rules), fill defaults."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import ConfigError, ConfigProblem
from . import paths, semantic
from .limits import EVAL_TIMEOUT, data_problems
from .model import Config, Target, from_document
from .redact import excerpt, excerpt_read
from .schema import fill_defaults, hint_for, load_schema, validator
from .source import Source, format_path, parse_path, read_source

Quote = Callable[[Any], str]

__all__ = [
    "Config",
    "Source",
    "Target",
    "load_config",
    "load_config_source",
    "load_document",
    "load_schema",
    "locate",
    "validate_document",
]


def load_config(path: Path, *, nix_instantiate: str = "nix-instantiate",
                eval_timeout: float = EVAL_TIMEOUT) -> Config:
    """Read, validate and type a config file. Raises ConfigError listing every problem."""
    source = read_source(path, nix_instantiate=nix_instantiate, eval_timeout=eval_timeout)
    return from_document(validate_document(source))


def load_config_source(
    path: Path, *, nix_instantiate: str = "nix-instantiate", eval_timeout: float = EVAL_TIMEOUT
) -> tuple[Config, Source]:
    """Like `load_config`, also returning the source, to locate later problems (`locate`)."""
    source = read_source(path, nix_instantiate=nix_instantiate, eval_timeout=eval_timeout)
    return from_document(validate_document(source)), source


def locate(error: ConfigError, source: Source) -> ConfigError:
    """Fill in file and line for problems found after loading (e.g. by the generator),
    whose `path` names a config field."""
    return ConfigError([
        p if p.file else ConfigProblem(
            source.file, source.line_of(parse_path(p.path)) if p.path else None,
            p.path, p.message)
        for p in error.problems
    ])


def load_document(data: Any, name: str = "<config>") -> Config:
    """Validate an in-memory document (e.g. the daemon's generated config.json). It did not
    come through `read_source`, so it gets its checks here: NaN passes every JSON Schema."""
    found = data_problems(data)
    if found:
        raise ConfigError([ConfigProblem(name, None, format_path(f.path), f.message)
                           for f in found])
    return from_document(validate_document(Source(name, data, lambda _path: None)))


def validate_document(source: Source) -> dict[str, Any]:
    problems = _schema_problems(source)
    if problems:
        raise ConfigError(problems)
    filled: dict[str, Any] = paths.normalized(fill_defaults(source.data))
    findings = semantic.check(filled)
    if findings:
        raise ConfigError([
            ConfigProblem(source.file, source.line_of(field), format_path(field), message)
            for field, message in findings
        ])
    return filled


def _schema_problems(source: Source) -> list[ConfigProblem]:
    quote = excerpt_read if source.computed else excerpt
    errors = sorted(validator().iter_errors(source.data), key=lambda e: list(e.absolute_path))
    problems = []
    for error in errors:
        field = tuple(error.absolute_path)
        shown = format_path(field)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            # Point at the first unknown key itself, not at the mapping holding it.
            known = _schema_node(error).get("properties", {})
            unknown = sorted(k for k in error.instance if k not in known)[:1]
            field += tuple(unknown)
            shown = format_path(field)
            if source.computed and unknown:  # a key a .nix config may have read from a file
                parent = format_path(field[:-1])
                shown = f"{parent}.{quote(unknown[0])}" if parent else quote(unknown[0])
        problems.append(ConfigProblem(
            source.file, source.line_of(field), shown, _message(error, quote)
        ))
    return problems


def _schema_node(error: jsonschema.ValidationError) -> dict[str, Any]:
    return error.schema if isinstance(error.schema, dict) else {}


def _message(error: jsonschema.ValidationError, quote: Quote) -> str:
    # For anyOf/oneOf, the deepest sub-error names the real cause better than the summary.
    if error.context:
        best = jsonschema.exceptions.best_match(error.context)
        if best is not None and best.validator not in ("type",):
            error = best
    hint = _schema_node(error).get("x-hint")
    hint = hint or hint_for(list(error.schema_path))
    what = _describe(error, quote)
    return f"{what}; {hint}" if hint else what


def _describe(error: jsonschema.ValidationError, quote: Quote) -> str:
    keyword = error.validator
    if keyword == "additionalProperties":
        properties = _schema_node(error).get("properties", {})
        instance = error.instance if isinstance(error.instance, dict) else {}
        extra = sorted(set(instance) - set(properties))
        known = ", ".join(sorted(properties))
        return f"unknown key(s) {', '.join(map(quote, extra))}; known keys here: {known}"
    if keyword == "required":
        return str(error.message).replace("is a required property", "is required but missing")
    if keyword == "not" and isinstance(error.instance, str):
        return f"value {quote(error.instance)} is not allowed"
    if keyword == "pattern":
        return f"{quote(error.instance)} has the wrong form"
    if keyword == "type":
        wanted: Any = error.validator_value
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        expected = " or ".join(_TYPE_WORDS.get(n, n) for n in names)
        return f"expected {expected}, found {_kind(error.instance, quote)}"
    # jsonschema's own messages start with the whole value: quote only a part of it.
    return str(error.message).replace(repr(error.instance), quote(error.instance), 1)


# JSON Schema's type names in the words of someone writing YAML.
_TYPE_WORDS = {
    "array": "a list", "object": "a mapping (key: value)", "string": "a string",
    "integer": "a whole number", "number": "a number", "boolean": "true or false",
    "null": "null",
}


def _kind(value: Any, quote: Quote) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {quote(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "null"
