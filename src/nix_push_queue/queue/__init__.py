"""The durable queue: one SQLite database, one row per (store path, target)."""

from .store import Job, JobState, QueueStore, TargetStats

__all__ = ["Job", "JobState", "QueueStore", "TargetStats"]
