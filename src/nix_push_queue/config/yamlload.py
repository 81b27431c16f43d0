"""YAML (and JSON, for its line numbers) composed once, bounded, into JSON-shaped data.

The composer counts as it goes: nesting (PyYAML recurses once per level, so a deep file
would end in RecursionError) and the number of values once aliases are expanded (a few
hundred bytes of nested aliases stand for billions of values). Both stop at the limits in
`limits` with the line where they were crossed. A recursive alias is refused.

The constructor yields only what JSON can hold: string keys (a `? [a, b]` key or `1:` next to
`a:` is an error at its line, not a TypeError later), no binary/set/omap tags, timestamps
kept as the text written. Merge keys (`<<: *defaults`) work; keys written in the mapping
itself win over merged ones and may not repeat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.error import MarkedYAMLError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from .limits import MAX_DEPTH, MAX_NODES, TOO_DEEP, TOO_MANY
from .redact import excerpt

MERGE_TAG = "tag:yaml.org,2002:merge"


class Refused(MarkedYAMLError):
    """Valid YAML that is no config: a limit of `limits` crossed, or a value JSON cannot hold.
    Reported without the "invalid YAML" of syntax errors."""


class _BoundedComposer(Composer):
    if TYPE_CHECKING:  # the parser's, which comes with the loader class
        def check_event(self, *choices: type[yaml.Event]) -> bool: ...
        def peek_event(self) -> Any: ...

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        # id(node) -> (values once aliases are expanded, height); present once composed.
        self._measure: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._measure:
                raise Refused(None, None, f"alias *{event.anchor} is used inside its own "
                                 "anchor; a config cannot contain itself", event.start_mark)
            return super().compose_node(parent, index)
        # Collections nest; a scalar is no level (as in JSON's count of brackets).
        nests = not self.check_event(yaml.ScalarEvent)
        self._depth += nests
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise Refused(None, None, TOO_DEEP, mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= nests
        if node is None:
            return None
        size, height = 1, 0
        for child in _children(node):
            child_size, child_height = self._measure[id(child)]
            size, height = size + child_size, max(height, child_height)
        height += nests
        if size > MAX_NODES:
            raise Refused(None, None, TOO_MANY, node.start_mark)
        if height > MAX_DEPTH:  # deep through aliases
            raise Refused(None, None, TOO_DEEP, node.start_mark)
        self._measure[id(node)] = (size, height)
        return node


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _key(loader: SafeConstructor, node: Node) -> str:
    if not isinstance(node, ScalarNode):
        raise Refused(None, None, "a key must be a plain name, not a list or "
                               "mapping (`? ...` complex key)", node.start_mark)
    key = loader.construct_object(node)
    if not isinstance(key, str):
        raise Refused(None, None, f"key {node.value!r} is read as {excerpt(key)}, "
                               "not a name; quote it", node.start_mark)
    return key


def _construct_mapping(loader: SafeConstructor, node: MappingNode) -> dict[Any, Any]:
    seen: set[str] = set()
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:
            continue
        key = _key(loader, key_node)
        if key in seen:
            raise ConstructorError(None, None, f"duplicate key {excerpt(key)}; keep one of "
                                   "them", key_node.start_mark)
        seen.add(key)
    # Merged pairs go first, so the mapping's own keys win (and line lookups, which take
    # the last match, point at them).
    loader.flatten_mapping(node)
    for key_node, _ in node.value:
        _key(loader, key_node)
    return loader.construct_mapping(node)


def _as_written(loader: SafeConstructor, node: ScalarNode) -> str:
    return str(node.value)


def _refuse(loader: SafeConstructor, node: Node) -> None:
    raise Refused(None, None, f"YAML type {node.tag.rsplit(':', 1)[-1]} has no "
                           "place in a config; use strings, numbers, lists and mappings",
                           node.start_mark)


def _construct_int(loader: SafeConstructor, node: ScalarNode) -> int:
    try:
        return loader.construct_yaml_int(node)
    except ValueError as exc:  # more digits than int() converts
        raise Refused(None, None, f"number {excerpt(node.value)} is too large",
                               node.start_mark) from exc


class PyLoader(Reader, Scanner, Parser, _BoundedComposer, SafeConstructor, Resolver):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _BoundedComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


LOADERS: list[type[Any]] = [PyLoader]
if yaml.__with_libyaml__:
    from yaml.cyaml import CParser  # type: ignore[attr-defined]

    class CLoader(_BoundedComposer, CParser, SafeConstructor, Resolver):
        """libyaml's parser (5 times faster) under the same composer and constructor."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _BoundedComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    LOADERS.insert(0, CLoader)

for _loader in LOADERS:
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    _loader.add_constructor("tag:yaml.org,2002:timestamp", _as_written)
    _loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
    for _tag in ("binary", "set", "omap", "pairs"):
        _loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse)
BoundedLoader = LOADERS[0]


def load(text: str, loader_class: type[Any] | None = None) -> tuple[Any, Node | None]:
    """(data, root node) of one YAML document. Raises yaml.YAMLError (Refused: no config)."""
    loader = (loader_class or BoundedLoader)(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
        return data, root
    finally:
        loader.dispose()


def compose(text: str) -> Node | None:
    """The root node only (line numbers of a JSON file), or None when it cannot be composed."""
    loader = BoundedLoader(text)
    try:
        root: Node | None = loader.get_single_node()
        return root
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
