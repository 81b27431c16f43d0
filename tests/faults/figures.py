"""The fault suite's figures: one row per scenario, printed as a table at the end of the run
(see conftest.py) and written to docs/faults.md on request.

A row is recorded only after the scenario's own checks ran, so the table shows what was
measured, never what was hoped for.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"


@dataclass(frozen=True)
class Row:
    scenario: str
    faults: int        # faults injected (kills, cuts, malformed messages, ...)
    enqueued: int      # distinct store paths the scenario handed to the queue
    uploaded: int      # of those, present in the cache with a valid narinfo
    dead: int          # visibly dead-lettered with a reason
    lost: int          # neither uploaded nor dead-lettered: must be 0
    duplicated: int    # queue rows beyond one per (path, target): must be 0
    seconds: float


class Figures:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def record(self, row: Row) -> None:
        self.rows.append(row)

    def table(self) -> str:
        head = [f.name for f in fields(Row)]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows:
            cells = [str(getattr(row, name)) for name in head]
            cells[-1] = f"{row.seconds:.1f}"
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def write_doc(self, path: Path, note: str) -> None:
        """Replace the table between the markers in `path`, keeping the prose around it."""
        text = path.read_text(encoding="utf-8") if path.exists() else f"{BEGIN}\n{END}\n"
        before, _, rest = text.partition(BEGIN)
        _, _, after = rest.partition(END)
        block = f"{BEGIN}\n{note}\n\n{self.table()}\n{END}"
        path.write_text(before + block + after, encoding="utf-8")


# One collector per test session (the suite runs in one process).
FIGURES = Figures()
