"""Benchmarks: scripts with reports, not timed assertions."""
