"""The JSON Schema: loading it, filling its defaults, and validating against it.

The schema is the only place defaults are written down; `fill_defaults` applies them so
that the rest of the program reads a complete document.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

Json = Any  # a decoded JSON value


@cache
def load_schema() -> dict[str, Json]:
    text = resources.files(__package__).joinpath("config.schema.json").read_text("utf-8")
    schema: dict[str, Json] = json.loads(text)
    return schema


def _resolve(node: dict[str, Json], root: dict[str, Json]) -> dict[str, Json]:
    """Follow local `$ref`s, merging the referring node's own keywords on top."""
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node
    target: Json = root
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    merged = dict(_resolve(target, root))
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return merged


def fill_defaults(document: Json, schema: dict[str, Json] | None = None) -> Json:
    """Return a copy of `document` with every missing property that has a default set.

    Only valid documents should be filled: where the shape is wrong the value is left as is
    for validation to report.
    """
    root = schema if schema is not None else load_schema()
    result = copy.deepcopy(document)
    _fill(result, root, root)
    return result


def _fill(value: Json, node: dict[str, Json], root: dict[str, Json]) -> None:
    node = _resolve(node, root)
    if isinstance(value, dict):
        for name, sub in node.get("properties", {}).items():
            sub_resolved = _resolve(sub, root)
            if name not in value and "default" in sub_resolved:
                value[name] = copy.deepcopy(sub_resolved["default"])
            if name in value:
                _fill(value[name], sub_resolved, root)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            _fill(item, node["items"], root)


def hint_for(schema_path: list[str | int]) -> str | None:
    """The innermost `x-hint` along a failing keyword's schema path.

    jsonschema's schema paths skip `$ref` hops, so every node is resolved before stepping in.
    """
    root = load_schema()
    node: Json = root
    hint: str | None = None
    for part in schema_path:
        if not isinstance(node, (dict, list)):
            break
        if isinstance(node, dict):
            node = _resolve(node, root)
            hint = node.get("x-hint", hint)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    if isinstance(node, dict):
        hint = _resolve(node, root).get("x-hint", hint)
    return hint


def validator() -> jsonschema.protocols.Validator:
    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)
