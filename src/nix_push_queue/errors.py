"""The one error hierarchy. Every subclass carries the context a user needs to act.

The CLI maps classes to exit codes (`EXIT_CODES`); nothing below the CLI exits.
"""

from __future__ import annotations

from dataclasses import dataclass


class NpqError(Exception):
    """Base of every error nix-push-queue raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file, located as precisely as we can."""

    file: str
    line: int | None
    path: str  # e.g. "targets[1].url"; "" for the document itself
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}"


class ConfigError(NpqError):
    """The config cannot be used. Carries every problem found, not only the first."""

    exit_code = 1

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class NixError(NpqError):
    """A Nix command failed where we needed it to succeed."""

    exit_code = 3

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-5:]
        super().__init__(
            f"`{' '.join(argv[:3])} ...` exited {returncode}: " + " | ".join(tail)
        )


class OutputError(NpqError):
    """Generated files could not be written (nothing half-written is left behind)."""

    exit_code = 4


class ProtocolError(NpqError):
    """A wire message was malformed, too large, or of an unknown version.

    `code` is the wire error code sent back to the peer (protocol.ErrorCode); `field` names
    the offending field when there is one.
    """

    exit_code = 5

    def __init__(self, message: str, code: str = "bad_request", field: str | None = None) -> None:
        self.code = code
        self.field = field
        super().__init__(message)


class SpoolError(NpqError):
    """The spool could not be written (disk full, read-only, permissions) or read."""

    exit_code = 11

    def __init__(self, spool_dir: str, reason: str) -> None:
        self.spool_dir = spool_dir
        self.reason = reason
        super().__init__(f"spool {spool_dir}: {reason}")


class DaemonUnavailable(NpqError):
    """The daemon's socket did not answer."""

    exit_code = 6


class QueueError(NpqError):
    """The queue database could not be used."""

    exit_code = 7


class QueueFull(QueueError):
    """The queue's disk is full: the write was rolled back and must be tried again once
    there is space (the caller holds what it meant to record)."""


class VerifyFailed(NpqError):
    """A step of `verify` failed; `step` names it."""

    exit_code = 8

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(f"verify failed at step '{step}': {reason}")


class WaitTimeout(NpqError):
    """`wait` gave up before the queue drained."""

    exit_code = 9


class DeadLetters(NpqError):
    """The queue drained but some paths are dead letters."""

    exit_code = 10


class PathsLost(NpqError):
    """`wait`: the queue drained, but paths left the local store before their upload
    (garbage-collected; see `status`, then `drop` to acknowledge)."""

    exit_code = 13


class NotQueued(NpqError):
    """`wait --paths`: a path is in no queue row for a target (never pushed, or dropped)."""

    exit_code = 14


class DaemonError(NpqError):
    """The daemon cannot start: socket in use, unusable inherited fd or state directory."""

    exit_code = 12


class TrustError(NpqError):
    """Root would run, or the daemon would trust, a file another user can change
    (trust/; docs/security.md). One line per file: path, owner, mode, what to do."""

    exit_code = 15
