"""Hypothesis strategies for hostile and careless configs, one family per class of issue 14:
unbounded work (alias bombs, depth, size), shapes JSON cannot hold (complex and non-string
keys), numbers that are not numbers, paths spelled around the rules, merge keys, values read
from files, planted manifests. Each yields the text of a file and what `validate` must say.

Written from the shapes of the classes, not from the project's own test data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from hypothesis import strategies as st

from .strategies import NIX32

Format = Literal["yaml", "json"]
MAX_BYTES = 1024 * 1024  # the loader's documented limits, restated (an oracle, not an import)
MAX_DEPTH = 32
MAX_NODES = 100_000


@dataclass(frozen=True)
class Case:
    """A config file to write, and the fragment its error must contain (None: it must be
    accepted)."""

    text: str
    suffix: str
    refused_with: str | None


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)


def targets() -> st.SearchStrategy[list[dict[str, Any]]]:
    target = st.builds(lambda n, d, c: {"name": n, "url": f"file:///srv/{d}", "compression": c},
                       NAMES, NAMES, st.sampled_from(["xz", "zstd", "none"]))
    return st.lists(target, min_size=1, max_size=4, unique_by=(lambda t: t["name"],
                                                               lambda t: t["url"]))


def documents() -> st.SearchStrategy[dict[str, Any]]:
    """Valid configs of a few shapes."""
    return st.builds(
        lambda ts, workers, excludes: {"targets": ts, "queue": {"workers": workers},
                                       "filters": {"exclude": excludes}},
        targets(), st.integers(1, 16), st.lists(st.sampled_from(["*.drv", "*-source"]),
                                                max_size=2, unique=True))


def render(doc: Any, fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=1)
    return str(yaml.safe_dump(doc, sort_keys=False))


# -- 1. unbounded work -----------------------------------------------------------------------


def alias_bombs() -> st.SearchStrategy[Case]:
    """`levels` lists each holding `width` aliases of the one before."""
    def build(levels: int, width: int, where: str) -> Case:
        lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
        lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
        body = "\n".join(lines) + "\n"
        text = (f"{body}targets: *l{levels - 1}\n" if where == "targets"
                else f"{body}targets: []\nfilters: {{exclude: *l{levels - 1}}}\n")
        # Values once expanded, counted as the loader documents it: list l_i holds `width`
        # copies of l_(i-1); the root holds every l_i, plus the last one used once more.
        sizes = [1 + width]
        for _ in range(1, levels):
            sizes.append(1 + width * sizes[-1])
        use = 1 + sizes[-1] if where == "targets" else 2 + 1 + 2 + sizes[-1]
        explodes = 1 + sum(1 + s for s in sizes) + use > MAX_NODES
        # Small bombs are refused too, by the schema (unknown keys l0...): either way fast.
        return Case(text, ".yaml", "expands to more than" if explodes else "")
    return st.builds(build, st.integers(2, 14), st.integers(2, 12),
                     st.sampled_from(["targets", "filters"]))


def deep(depth_max: int = 200_000) -> st.SearchStrategy[Case]:
    def expect(depth: int) -> str | None:
        # The root mapping and `filters` are two levels; one list of strings is a valid
        # `exclude`, a list in a list is refused by the schema.
        return "levels deep" if depth + 2 > MAX_DEPTH else "" if depth > 1 else None

    def build(depth: int, fmt: str) -> Case:
        if fmt == "json":
            nest = "[" * depth + '"x"' + "]" * depth
            return Case('{"targets": [], "filters": {"exclude": ' + nest + "}}", ".json",
                        expect(depth))
        if fmt == "flow":
            nest = "[" * depth + "x" + "]" * depth
            return Case(f"targets: []\nfilters: {{exclude: {nest}}}\n", ".yaml", expect(depth))
        depth = min(depth, 1200)  # block style indents: its size grows with depth squared
        block = "".join(" " * (2 + i) + "-\n" for i in range(depth)) + " " * (3 + depth) + "x\n"
        return Case(f"targets: []\nfilters:\n exclude:\n{block}", ".yaml", expect(depth))
    return st.builds(build, st.one_of(st.integers(1, 64), st.integers(64, depth_max)),
                     st.sampled_from(["json", "flow", "block"]))


def huge() -> st.SearchStrategy[Case]:
    """Files around and far beyond MAX_BYTES, valid but for their size."""
    def build(size: int, fmt: Format) -> Case:
        item = "'*-pattern-number-0123456789'"
        count = max(1, size // (len(item) + 6))
        if fmt == "json":
            text = json.dumps({"targets": [], "filters": {"exclude": ["*-p"] * count}})
        else:
            text = "targets: []\nfilters:\n  exclude:\n" + f"    - {item}\n" * count
        return Case(text, "." + fmt, "larger than" if len(text.encode()) > MAX_BYTES else None)
    return st.builds(build, st.sampled_from([MAX_BYTES // 2, MAX_BYTES - 100, MAX_BYTES + 1,
                                             3 * MAX_BYTES, 20 * MAX_BYTES]),
                     st.sampled_from(["yaml", "json"]))


# -- 2. shapes JSON cannot hold --------------------------------------------------------------


def odd_keys() -> st.SearchStrategy[Case]:
    key = st.sampled_from(["? [a, b]\n  : 1", "? {a: 1}\n  : 1", "1: x", "-3: x", "0.5: x",
                           "true: x", "on: x", "null: x", "~: x", "2024-01-01: x",
                           "? !!set {a}\n  : 1", "[a]: 1", "{a: 1}: 2"])
    where = st.sampled_from(["queue", "filters", "metrics", "hook"])
    return st.builds(lambda k, w: Case(f"targets: []\n{w}:\n  {k}\n", ".yaml", ""), key, where)


# -- 3. numbers that are not numbers ---------------------------------------------------------

YAML_NON_FINITE = [".nan", ".NaN", ".NAN", ".inf", ".Inf", "-.inf", "+.inf", "-.INF",
                   "1.0e+400", "-1.0e+999", "!!float nan", "!!float inf", "!!float -inf"]
JSON_NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1E+309"]
NUMBER_FIELDS = [("queue", "workers"), ("queue", "batch_wait"), ("hook", "timeout"),
                 ("queue", "retry", "max_delay"), ("queue", "retry", "initial_delay"),
                 ("targets", 0, "upload_timeout"), ("targets", 0, "name"), ("version",)]


def non_finite() -> st.SearchStrategy[Case]:
    def build(doc: dict[str, Any], field: tuple[str | int, ...], fmt: Format,
              spelling: str) -> Case:
        marker = 123456789.25  # rendered as itself, then replaced by the spelling
        node: Any = doc
        for part in field[:-1]:
            node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
        node[field[-1]] = marker
        return Case(render(doc, fmt).replace(str(marker), spelling, 1), "." + fmt,
                    "not a finite number")
    return st.one_of(
        st.builds(build, documents(), st.sampled_from(NUMBER_FIELDS), st.just("yaml"),
                  st.sampled_from(YAML_NON_FINITE)),
        st.builds(build, documents(), st.sampled_from(NUMBER_FIELDS), st.just("json"),
                  st.sampled_from(JSON_NON_FINITE)))


def json_duplicates() -> st.SearchStrategy[Case]:
    def build(doc: dict[str, Any], where: str) -> Case:
        text = json.dumps(doc)
        anchor = {"top": '{"targets"', "queue": '"queue": {', "target": '"name"'}[where]
        key = {"top": '"version": 1, "version": 1, ', "queue": '"workers": 2, ',
               "target": '"name": "dup", '}[where]
        at = text.index(anchor) + (1 if where == "top" else len(anchor) if where == "queue"
                                   else 0)
        return Case(text[:at] + key + text[at:], ".json", "duplicate key")
    return st.builds(build, documents(), st.sampled_from(["top", "queue", "target"]))


# -- 4. paths spelled around the rules --------------------------------------------------------


def respell(path: str, how: list[str]) -> str:
    """The same path (for the kernel, without symlinks), spelled otherwise."""
    parts = path.strip("/").split("/")
    out = ""
    for i, part in enumerate(parts):
        trick = how[i % len(how)]
        sep = {"slashes": "//", "dot": "/./", "dotdot": f"/{part}/../", "plain": "/",
               "trailing": "/"}[trick]
        out += sep + part
    return out + ("/" if "trailing" in how else "")


STORE_KEY = "/nix/store/" + NIX32[:32] + "-cache-priv-key.pem"


def path_spellings() -> st.SearchStrategy[Case]:
    tricks = st.lists(st.sampled_from(["slashes", "dot", "dotdot", "plain", "trailing"]),
                      min_size=1, max_size=4).filter(lambda h: set(h) - {"plain"})

    def secret(how: list[str]) -> Case:
        doc = {"targets": [{"name": "a", "url": "file:///srv/a",
                            "secret_key_file": respell(STORE_KEY, how)}]}
        return Case(render(doc, "yaml"), ".yaml", "")

    def spool(how: list[str]) -> Case:
        doc = {"targets": [{"name": "a", "url": "file:///srv/a"}],
               "queue": {"state_dir": "/var/lib/npq", "spool_dir": respell("/var/lib/npq", how)}}
        return Case(render(doc, "yaml"), ".yaml", "")

    def file_url(host: str, how: list[str]) -> Case:
        url = f"file://{host}/srv/cache" if host else "file://" + respell("/srv/../etc", how)
        return Case(render({"targets": [{"name": "a", "url": url}]}, "yaml"), ".yaml", "")

    return st.one_of(st.builds(secret, tricks), st.builds(spool, tricks),
                     st.builds(file_url, st.sampled_from(["srv", "localhost", "", "a.b"]),
                               tricks))


# -- 5. merge keys ----------------------------------------------------------------------------


def merged(doc: dict[str, Any]) -> str:
    """`doc` in YAML with every target built from a shared anchor by `<<`, overriding only
    what differs (targets() gives every target the same keys): must load as `doc` does."""
    first, *rest = doc["targets"]
    lines = ["targets:", "  - &base " + json.dumps(first)]
    for target in rest:
        own = {k: v for k, v in target.items() if first.get(k) != v}
        lines.append("  - <<: *base")
        lines += [f"    {k}: {json.dumps(v)}" for k, v in own.items()]
    others = {k: v for k, v in doc.items() if k != "targets"}
    return "\n".join(lines) + "\n" + (str(yaml.safe_dump(others)) if others else "")


# -- 6. values read from files ----------------------------------------------------------------

STRING_FIELDS = ["url", "name", "public_key", "secret_key_file", "compression"]


def reading_nix(secret_file: str) -> st.SearchStrategy[tuple[str, str]]:
    """(.nix text, how the secret reaches a value): readFile into a field, into a key, or
    thrown."""
    read = f"(builtins.readFile {secret_file})"
    return st.one_of(
        st.builds(lambda f: (f'{{ targets = [ {{ name = "a"; url = "file:///srv/a"; '
                             f"{f} = {read}; }} ]; }}", f), st.sampled_from(STRING_FIELDS)),
        st.just((f'{{ targets = []; "${{{read}}}" = 1; }}', "key")),
        st.just((f"{{ targets = throw {read}; }}", "throw")),
        st.just((f"{{ targets = builtins.fromJSON {read}; }}", "fromJSON")),
    )


# -- 7. planted manifests ---------------------------------------------------------------------


def manifest_entries(victim: str) -> st.SearchStrategy[str]:
    """Names a planted manifest may list for a file outside the tree."""
    return st.sampled_from([
        "../victim.txt", victim, "/" + victim, "etc/../../victim.txt", "./../victim.txt",
        "etc/nix/../../../victim.txt", "", ".", "etc//x", "etc/./x", "etc/x\0", "..",
    ])
