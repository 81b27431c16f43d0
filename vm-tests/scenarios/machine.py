"""The machine API scenarios use (docs/internals.md), and the `subtest` hook."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol


class Machine(Protocol):
    name: str

    def succeed(self, *commands: str, timeout: int | None = None) -> str: ...
    def fail(self, *commands: str, timeout: int | None = None) -> str: ...
    def wait_for_unit(self, unit: str, timeout: int = 900) -> None: ...
    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str: ...
    def crash(self) -> None: ...
    def start(self) -> None: ...
    def shutdown(self) -> None: ...


# The NixOS test driver's `subtest(name)` context manager: it logs and times a block.
Subtest = Callable[[str], AbstractContextManager[object]]


@contextlib.contextmanager
def plain_subtest(name: str) -> Iterator[None]:
    """Used where no driver provides one."""
    print(f"subtest: {name}", flush=True)
    yield
