"""A simulated network: a builder namespace and a cache-host namespace running nginx WebDAV.

Everything that talks to the cache runs inside the builder namespace (`Network.argv`), so all
benchmark traffic stays between addresses assigned inside namespaces this module created
(10.231.N.1 and 10.231.N.2 on a veth pair) or on the builder namespace's own loopback.

Profiles (`Network.apply`):
- normal: the bare veth;
- slow: 200 ms RTT (a user-space delaying proxy, `bench.delayproxy`, 100 ms each way) and
  10 Mbit/s each way (`tc tbf` on both ends of the veth);
- lossy: 10 % of packets dropped at random in each direction (iptables' statistic match);
- down: the builder's end of the veth is down, so connecting fails at once (no route).
`close()` removes both namespaces (which deletes the veth and every qdisc and rule with them).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Profile = Literal["normal", "slow", "lossy", "down"]
PROFILES: tuple[Profile, ...] = ("normal", "slow", "lossy", "down")

ONE_WAY_DELAY = 0.100  # seconds; 200 ms round trip
RATE = "10mbit"
LOSS = 0.10
CACHE_PORT = 8080  # inside the cache namespace only: nothing else listens there
LOW = 'echo 19 > /proc/self/autogroup 2>/dev/null; exec nice -n 19 "$@"'
PROBE = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)"

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  server {{
    listen {addr}:{port};
    root {root};
    client_max_body_size 0;
    client_body_buffer_size 1m;
    dav_methods PUT;
    create_full_put_path on;
    dav_access user:rw group:r all:r;
  }}
}}
"""


class NetworkError(RuntimeError):
    """The simulated network could not be set up (needs root, iproute2, iptables, nginx)."""


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise NetworkError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def unavailable_reason() -> str | None:
    """Why the netns benchmarks cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network simulation needs root (ip netns, tc, iptables)"
    for tool in ("ip", "tc", "iptables", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"network simulation needs `{tool}` (scripts/bootstrap.sh installs it)"
    return None


def reap_stale() -> list[str]:
    """Remove the namespaces of benchmark runs that died without cleaning up (kill -9):
    their names carry the pid of the run, which no longer exists. Processes still inside
    them (that run's nginx or proxy) are ended by pid first."""
    reaped = []
    for name in _run(["ip", "netns", "list"]).stdout.split():
        parts = name.split("-")
        if len(parts) != 3 or parts[0] not in ("npqb", "npqc") or not parts[1].isdigit():
            continue
        if Path(f"/proc/{parts[1]}").exists():
            continue
        for pid in _run(["ip", "netns", "pids", name], check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _run(["ip", "netns", "del", name], check=False)
        reaped.append(name)
    return reaped


def _free_octet() -> int:
    """A third octet N whose 10.231.N.0/24 no namespace of ours is using right now."""
    used = _run(["ip", "netns", "list"]).stdout
    taken = {int(w.rsplit("-", 1)[1]) for w in used.split() if w.startswith("npqb-")
             and w.rsplit("-", 1)[1].isdigit()}
    free = [n for n in range(1, 255) if n not in taken]
    if not free:
        raise NetworkError("no free 10.231.N.0/24 for a benchmark network")
    return secrets.choice(free)


@dataclass
class Network:
    """Builder and cache-host namespaces joined by a veth pair, nginx serving `cache_dir`."""

    workdir: Path
    octet: int = field(default_factory=_free_octet)
    profile: Profile = "normal"
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _proxy: subprocess.Popen[bytes] | None = None
    _proxy_port: int = 0

    @property
    def builder_ns(self) -> str:
        return f"npqb-{os.getpid()}-{self.octet}"

    @property
    def cache_ns(self) -> str:
        return f"npqc-{os.getpid()}-{self.octet}"

    @property
    def builder_if(self) -> str:
        return f"npqb{self.octet}"

    @property
    def cache_if(self) -> str:
        return f"npqc{self.octet}"

    @property
    def builder_ip(self) -> str:
        return f"10.231.{self.octet}.1"

    @property
    def cache_ip(self) -> str:
        return f"10.231.{self.octet}.2"

    @property
    def cache_dir(self) -> Path:
        return self.workdir / "cache"

    @property
    def url(self) -> str:
        """The cache's URL as seen from the builder namespace under the current profile."""
        if self.profile == "slow":
            return f"http://127.0.0.1:{self._proxy_port}"
        return f"http://{self.cache_ip}:{CACHE_PORT}"

    def argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the builder namespace."""
        return ["ip", "netns", "exec", self.builder_ns, *argv]

    def open(self) -> None:
        try:
            self._create_namespaces()
            self._start_nginx()
        except BaseException:
            self.close()
            raise

    def _create_namespaces(self) -> None:
        b, c = self.builder_ns, self.cache_ns
        _run(["ip", "netns", "add", b])
        _run(["ip", "netns", "add", c])
        _run(["ip", "-n", b, "link", "add", self.builder_if, "type", "veth",
              "peer", "name", self.cache_if, "netns", c])
        _run(["ip", "-n", b, "addr", "add", f"{self.builder_ip}/24", "dev", self.builder_if])
        _run(["ip", "-n", c, "addr", "add", f"{self.cache_ip}/24", "dev", self.cache_if])
        for ns, ifname in ((b, self.builder_if), (c, self.cache_if)):
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "link", "set", ifname, "up"])

    def _start_nginx(self) -> None:
        prefix = self.workdir / "nginx"
        for sub in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, addr=self.cache_ip, port=CACHE_PORT,
                                          root=self.cache_dir), encoding="utf-8")
        # The cache host is another machine; here it shares this one's CPUs, so it runs as
        # low as the daemon's uploads do (its own session, nice 19, that session's autogroup
        # too) and the figures are of the builder, not of the cache host's CPU.
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.cache_ns, "sh", "-c", LOW, "sh",
             "nginx", "-e", str(prefix / "error.log"), "-p", str(prefix), "-c", str(conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self._procs.append(proc)
        self._wait_listening("nginx", proc)

    def _wait_listening(self, what: str, proc: subprocess.Popen[bytes]) -> None:
        import sys

        probe = [sys.executable, "-c", PROBE, self.cache_ip, str(CACHE_PORT)]
        for _ in range(100):
            if proc.poll() is not None:
                raise NetworkError(f"{what} exited {proc.returncode} (see {self.workdir})")
            if _run(self.argv(probe), check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise NetworkError(f"{what} did not answer from {self.builder_ns}")

    def apply(self, profile: Profile) -> None:
        """Switch to `profile`, undoing the previous one first."""
        self._reset()
        self.profile = profile
        if profile == "slow":
            for ns, ifname in ((self.builder_ns, self.builder_if),
                               (self.cache_ns, self.cache_if)):
                _run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", ifname, "root",
                      "tbf", "rate", RATE, "burst", "32kb", "latency", "400ms"])
            self._start_proxy()
        elif profile == "lossy":
            for chain in ("INPUT", "OUTPUT"):
                _run(["ip", "netns", "exec", self.cache_ns, "iptables", "-A", chain, "-p", "tcp",
                      "-m", "statistic", "--mode", "random", "--probability", str(LOSS),
                      "-j", "DROP"])
        elif profile == "down":
            _run(["ip", "-n", self.builder_ns, "link", "set", self.builder_if, "down"])

    def _reset(self) -> None:
        if self._proxy is not None:
            self._stop(self._proxy)
            self._proxy = None
        _run(["ip", "-n", self.builder_ns, "link", "set", self.builder_if, "up"])
        for ns, ifname in ((self.builder_ns, self.builder_if), (self.cache_ns, self.cache_if)):
            _run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", ifname, "root"],
                 check=False)
        _run(["ip", "netns", "exec", self.cache_ns, "iptables", "-F"], check=False)

    def _start_proxy(self) -> None:
        import sys

        proc = subprocess.Popen(
            self.argv([sys.executable, "-m", "bench.delayproxy", "--listen", "127.0.0.1:0",
                       "--upstream", f"{self.cache_ip}:{CACHE_PORT}",
                       "--delay", str(ONE_WAY_DELAY)]),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parent.parent)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "LISTENING":
            self._stop(proc)
            raise NetworkError("the delay proxy did not start")
        self._proxy, self._proxy_port = proc, int(line[1])

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for proc in [*self._procs, *([self._proxy] if self._proxy else [])]:
            self._stop(proc)
        self._procs.clear()
        self._proxy = None
        for ns in (self.builder_ns, self.cache_ns):
            _run(["ip", "netns", "del", ns], check=False)


@contextlib.contextmanager
def network(workdir: Path) -> Iterator[Network]:
    net = Network(workdir)
    net.open()
    try:
        yield net
    finally:
        net.close()

