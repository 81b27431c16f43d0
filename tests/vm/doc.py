"""The install guide's tested steps: docs/non-nixos.md's shell blocks, run as written.

A block is marked by an HTML comment on the line before its fence: `vm-step` blocks run as
root inside the VM, `host-step` blocks on the machine that builds the image (the guide's
"machine with network access"):

    <!-- vm-step: NAME -->
    ```sh
    ...
    ```
"""

from __future__ import annotations

import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "non-nixos.md"
_STEP = re.compile(r"^<!-- (?:vm|host)-step: ([a-z-]+) -->\n```sh\n(.*?)^```$", re.M | re.S)


class GuideError(Exception):
    """The guide lacks a step the VM test runs."""


def steps(guide: Path = GUIDE) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in _STEP.finditer(guide.read_text("utf-8"))}


def step(name: str, guide: Path = GUIDE) -> str:
    """The step's shell text, run with `set -eux` so any failing line fails the step."""
    found = steps(guide)
    if name not in found:
        raise GuideError(f"{guide}: no `<!-- vm-step: {name} -->` or `host-step` block "
                         f"(have {sorted(found)})")
    return "set -eux -o pipefail\n" + found[name]
