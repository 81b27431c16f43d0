"""The fault suite: the real daemon, a real isolated Nix store and real caches, under hostile
input, faults and load. Prints its figures at the end of the run.

`soak` tests (long versions: 50+ kills, 10,000 paths) run only when asked for with a marker
expression naming them, e.g. `pytest tests/faults -m soak`; a plain run, including
`scripts/test -m 'not vm'`, deselects them here rather than through addopts, which a `-m`
on the command line would override.

Set NPQ_FAULTS_DOC=docs/faults.md to write the table into that file as well.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import pytest

from .figures import FIGURES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    markexpr = str(config.getoption("markexpr", "") or "")
    if "soak" in markexpr:
        return
    soak = [item for item in items if item.get_closest_marker("soak") is not None]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if item.get_closest_marker("soak") is None]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES.rows:
        return
    terminalreporter.section("nix-push-queue fault suite figures")
    terminalreporter.write_line(FIGURES.table())
    doc = os.environ.get("NPQ_FAULTS_DOC")
    if doc:
        markexpr = str(terminalreporter.config.getoption("markexpr", "") or "")
        note = (f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores, "
                f"Linux {platform.release()}, by `NPQ_FAULTS_DOC={doc} pytest tests/faults"
                f"{f' -m {markexpr!r}' if markexpr else ''}`.")
        FIGURES.write_doc(Path(doc), note)
        terminalreporter.write_line(f"figures written to {doc}")
