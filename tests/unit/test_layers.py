"""The package's architecture as a test: which top-level parts may import which.

The build-loop side (client/) and what it shares with the daemon (wire/, nix/) must stay free
of the daemon's imports: the hook runs inside Nix's build loop and pays for every module it
loads. Cycles between the top-level parts are refused so that each can be read on its own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "src" / "nix_push_queue"
NAME = "nix_push_queue"

# part -> parts it must never import
FORBIDDEN: dict[str, set[str]] = {
    "client": {"daemon", "verify", "commands", "generate", "cli", "trust"},
    "wire": {"client", "daemon", "verify", "commands", "generate", "config", "cli"},
    "nix": {"client", "daemon", "wire", "verify", "commands", "generate", "config", "cli"},
    "config": {"client", "daemon", "wire", "verify", "commands", "generate", "cli"},
    "generate": {"client", "daemon", "verify", "commands", "cli"},
    "daemon": {"client", "verify", "commands", "generate", "cli"},
    "verify": {"commands", "cli"},
    "trust": {"client", "daemon", "wire", "verify", "commands", "generate", "cli"},
    "errors": {"client", "daemon", "wire", "nix", "verify", "commands", "generate", "config"},
}


def part_of(module: str) -> str:
    rest = module.removeprefix(NAME).lstrip(".")
    return rest.split(".")[0] if rest else "__init__"


def imports(path: Path) -> Iterator[str]:
    """Absolute names of the package's modules that `path` imports."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    here = list(rel.parts if rel.name != "__init__" else rel.parts[:-1])
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.startswith(NAME):
                yield target
                yield from (f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith(NAME))


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        src = part_of(".".join(path.relative_to(PKG.parent).with_suffix("").parts))
        for target in imports(path):
            dst = part_of(target)
            if dst != src and ((PKG / dst).is_dir() or (PKG / f"{dst}.py").exists()):
                edges.setdefault(src, set()).add(dst)
    return edges


def test_forbidden_imports() -> None:
    edges = graph()
    wrong = {(a, b) for a, bs in edges.items() for b in bs if b in FORBIDDEN.get(a, set())}
    assert not wrong, f"imports across the architecture's lines: {sorted(wrong)}"


def test_no_cycles_between_parts() -> None:
    edges = graph()
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, trail: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend([*trail, node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*trail, node]):
                return True
        state[node] = 2
        return False

    for node in sorted(edges):
        if state.get(node) is None and visit(node, []):
            break
    assert not cycle, f"import cycle between parts: {' -> '.join(cycle)}"


def test_the_part_resolver_sees_the_hook_imports() -> None:
    # The test above is only as good as its import reader: the hook's own imports must show.
    assert {"nix", "wire"} <= graph()["client"]
