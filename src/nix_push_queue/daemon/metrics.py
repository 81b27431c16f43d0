"""Prometheus metrics of the daemon, in a registry of its own (never the global one).

Queue depth is not tracked by counters that could drift: it is read from the store at each
scrape. Everything else counts events the server and the worker report. Served over HTTP
only when `metrics.listen` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

STATES = ("pending", "inflight", "done", "dead", "skipped")
# `nix copy` runs take from milliseconds (file://, small paths) to an hour (upload_timeout).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class StatsLike(Protocol):
    """protocol.TargetStats, read-only."""

    @property
    def pending(self) -> int: ...
    @property
    def inflight(self) -> int: ...
    @property
    def done(self) -> int: ...
    @property
    def dead(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def oldest_pending_age(self) -> float | None: ...
    @property
    def gone(self) -> int: ...
    @property
    def released(self) -> int: ...


class _S3Collector(Collector):
    def __init__(self, held: Callable[[str], int], cap: int,
                 traffic: Callable[[], Mapping[str, tuple[int, int]]],
                 targets: list[str]) -> None:
        self._held, self._cap, self._traffic, self._targets = held, cap, traffic, targets

    def collect(self) -> Iterator[Any]:
        staged = GaugeMetricFamily("npq_staging_bytes", "Disk held by the boto3 S3 "
                                   "transport's staged files", labels=["target"])
        cap = GaugeMetricFamily("npq_staging_max_bytes", "The staging cap "
                                "(queue.staging_max_bytes)")
        requests = CounterMetricFamily("npq_s3_requests", "Requests the boto3 S3 transport "
                                       "sent", labels=["target"])
        sent = CounterMetricFamily("npq_s3_sent_bytes", "Bytes the boto3 S3 transport "
                                   "uploaded", labels=["target"])
        traffic = self._traffic()
        for target in self._targets:
            staged.add_metric([target], self._held(target))
            n, nbytes = traffic.get(target, (0, 0))
            requests.add_metric([target], n)
            sent.add_metric([target], nbytes)
        cap.add_metric([], self._cap)
        yield from (staged, cap, requests, sent)


class _QueueCollector(Collector):
    """Reads queue depth per target and state from the store at scrape time."""

    def __init__(self, stats: Callable[[], Mapping[str, StatsLike]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        rows = GaugeMetricFamily("npq_queue_rows", "Queue rows by target and state",
                                 labels=["target", "state"])
        lost = GaugeMetricFamily(
            "npq_lost_paths", "Rows lost (gone: the path left the store before its upload) "
            "or put at risk (released: the GC roots cap released its root), until dropped",
            labels=["target", "kind"])
        oldest = GaugeMetricFamily("npq_oldest_pending_age_seconds",
                                   "Age of the oldest pending row (0 when none)",
                                   labels=["target"])
        try:
            stats = self._stats()
        except Exception:
            # A scrape must not take the daemon down; the gap in the series shows the problem.
            log.exception("metrics: reading queue stats failed")
            stats = {}
        for target, s in sorted(stats.items()):
            for state in STATES:
                rows.add_metric([target, state], float(getattr(s, state)))
            oldest.add_metric([target], float(s.oldest_pending_age or 0.0))
            lost.add_metric([target, "gone"], float(s.gone))
            lost.add_metric([target, "released"], float(s.released))
        yield rows
        yield lost
        yield oldest


class DaemonMetrics:
    """Counters and histograms the server and the worker report to."""

    def __init__(self, stats: Callable[[], Mapping[str, StatsLike]] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.enqueued = Counter("npq_enqueued_paths", "Queue rows created, by source",
                                ["source"], registry=r)
        self.excluded = Counter("npq_excluded_paths",
                                "Paths refused at enqueue by filters.exclude", registry=r)
        self.requests = Counter("npq_requests", "Control requests by op and result",
                                ["op", "result"], registry=r)
        self.uploads = Counter("npq_uploads", "`nix copy` runs by target and result",
                               ["target", "result"], registry=r)
        self.uploaded_bytes = Counter(
            "npq_uploaded_bytes", "NAR bytes of uploaded queued paths (closure members that "
            "came along are not counted)", ["target"], registry=r)
        self.settled = Counter("npq_paths_settled",
                               "Rows settled by outcome: done, retry, dead, gone, skipped",
                               ["target", "outcome"], registry=r)
        self.quarantined = Counter(
            "npq_spool_quarantined", "Spool entries moved aside: unreadable, not a regular "
            "file, or holding invalid lines", registry=r)
        self.roots_released_total = Counter(
            "npq_gc_roots_released", "GC roots released by the cap, by reason (bytes, age)",
            ["reason"], registry=r)
        self.roots = Gauge("npq_gc_roots", "Queued paths held as GC roots", registry=r)
        self.roots_bytes = Gauge("npq_gc_roots_bytes", "NAR bytes of the paths held as GC "
                                 "roots (what gc_roots.max_bytes caps)", registry=r)
        self.crashes = Counter("npq_task_crashes", "Unexpected exceptions in the daemon's "
                               "loops, by task (each one restarted: supervise.py)", ["task"],
                               registry=r)
        self.latency = Histogram("npq_upload_duration_seconds", "Wall time of one `nix copy`",
                                 ["target"], buckets=LATENCY_BUCKETS, registry=r)
        if stats is not None:
            r.register(_QueueCollector(stats))
        self._server: Any = None

    # WorkerMetrics
    def upload_finished(self, target: str, kind: str, paths: int, seconds: float,
                        nbytes: int | None) -> None:
        self.uploads.labels(target, kind).inc()
        self.latency.labels(target).observe(seconds)
        if nbytes:
            self.uploaded_bytes.labels(target).inc(nbytes)

    def paths_settled(self, target: str, outcome: str, count: int) -> None:
        self.settled.labels(target, outcome).inc(count)

    # server
    def enqueue_handled(self, source: str, queued: int, excluded: int) -> None:
        self.enqueued.labels(source).inc(queued)
        self.excluded.inc(excluded)

    def request_handled(self, op: str, result: str) -> None:
        self.requests.labels(op, result).inc()

    # roots.RootMetrics
    def roots_released(self, reason: str, count: int) -> None:
        self.roots_released_total.labels(reason).inc(count)

    def roots_held(self, count: int, nbytes: int) -> None:
        self.roots.set(count)
        self.roots_bytes.set(nbytes)

    # supervise.CrashMetrics
    def task_crashed(self, task: str) -> None:
        self.crashes.labels(task).inc()

    # spool
    def spool_quarantined(self, entries: int) -> None:
        self.quarantined.inc(entries)

    def watch_s3(self, held: Callable[[str], int], cap: int,
                 traffic: Callable[[], Mapping[str, tuple[int, int]]],
                 targets: list[str]) -> None:
        """The boto3 S3 transport's staging disk (per target, and the cap) and what it sent
        (requests and bytes per target), read at scrape time."""
        self.registry.register(_S3Collector(held, cap, traffic, targets))

    def serve(self, listen: str) -> None:
        """Serve /metrics on `HOST:PORT` from a daemon thread."""
        host, port = split_listen(listen)
        self._server = start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics on http://%s/metrics", listen)

    def close(self) -> None:
        if isinstance(self._server, tuple):  # prometheus_client >= 0.17 returns (server, thread)
            self._server[0].shutdown()
            self._server[0].server_close()
        self._server = None


def split_listen(listen: str) -> tuple[str, int]:
    """`127.0.0.1:9469` or `[::1]:9469` -> (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)
