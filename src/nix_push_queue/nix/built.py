"""What `nix build --json` prints (dialect.Dialect.outputs_json): the outputs of derivations.

Every Nix of the matrix prints the same form (recorded in tests/data/nix-dialects):
`[{"drvPath": "/nix/store/…-x.drv", "outputs": {"out": "/nix/store/…-x"}}, …]`; Nix 2.26+
adds `startTime`/`stopTime`, which are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from .pathinfo import SNIPPET, NixOutputError


class BuiltError(NixOutputError):
    """`nix build --json` printed a form we do not know."""


def parse_built(text: str) -> dict[str, dict[str, str]]:
    """drv path -> {output name: output path}."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _fail(f"not JSON ({exc})", text) from None
    if not isinstance(data, list):
        raise _fail("expected a list", text)
    out: dict[str, dict[str, str]] = {}
    for item in data:
        if not isinstance(item, Mapping):
            raise _fail("expected objects in the list", text)
        drv, outputs = item.get("drvPath"), item.get("outputs")
        if not isinstance(drv, str) or not isinstance(outputs, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in outputs.items()):
            raise _fail("expected drvPath and outputs (name -> path)", text)
        out.setdefault(drv, {}).update(outputs)
    return out


def _fail(what: str, text: str) -> BuiltError:
    snippet = text.strip()[:SNIPPET]
    return BuiltError(f"nix build --json: {what} (output starts: {snippet!r}); this Nix prints "
                      "a form nix-push-queue does not know: please report it with "
                      "`nix --version`")
