"""What the Debian VM tests do to a machine: the install guide's steps, a cache served by nginx
inside the guest, and the scenario steps that vm-tests/scenarios does not have (yet).

The scenario functions take only the machine API (docs/internals.md) and shell strings, like
vm-tests/scenarios, so they can move there.
"""

from __future__ import annotations

import re
import shlex

from scenarios import steps

from . import doc
from .base_image import USER
from .qemu import Machine

NIX_CONF = "/etc/nix/nix.conf"
FILE_CACHE = "file:///srv/nix-cache"  # the guide's example target
HTTP_CACHE = "http://127.0.0.1:8080"  # nginx inside the guest (its own network namespace)
PUBLIC_KEY_FILE = "/etc/nix/cache-pub-key.pem"
SERVICE = "nix-push-queue.service"
GC_ROOTS = "/nix/var/nix/gcroots/nix-push-queue"  # docs/gc-roots.md

# Starts the daemon when a build's hook spools (the hook connects to no socket).
PATH_UNIT = "nix-push-queue.path"
# A normal user's build: no root, so Nix goes through the nix-daemon, which runs the hook.
USER_ENV = f"env -i HOME=/home/{USER} USER={USER} PATH=/usr/local/bin:/usr/bin:/bin"
USER_BUILD = f"{USER_ENV} /usr/sbin/runuser -u {USER} -- nix-build --no-out-link"

NGINX_SITE = """\
server {
  listen 127.0.0.1:8080;
  root /srv/nix-cache-http;
  client_max_body_size 0;
  location / {
    dav_methods PUT;
    create_full_put_path on;
    dav_access user:rw group:r all:r;
  }
}
"""

# Added to the guide's config by the tests: a second target that can be taken away (nginx
# stopped) for the outage and power-loss cases, and short retry delays so a test does not
# wait out the production backoff. Edited with the PyYAML the install brought along.
TEST_CONFIG_EDIT = """\
/opt/nix-push-queue/bin/python3 - <<'EOF'
import yaml
path = "/etc/nix-push-queue/config.yaml"
config = yaml.safe_load(open(path))
config["targets"].append({
    "name": "http", "url": "http://127.0.0.1:8080",
    "secret_key_file": "/etc/nix/cache-priv-key.pem",
    "public_key": open("/etc/nix/cache-pub-key.pem").read().strip(),
})
config["queue"] = {"retry": {"initial_delay": 1, "max_delay": 4, "max_attempts": 1000}}
open(path, "w").write(yaml.safe_dump(config))
EOF
"""



def root_link(path: str) -> str:
    """The hook's GC root for the store path `path` (docs/gc-roots.md)."""
    return f"{GC_ROOTS}/{path.removeprefix('/nix/store/')}"


def setup_http_cache(machine: Machine) -> None:
    machine.copy_from_host_text(NGINX_SITE, "/etc/nginx/sites-enabled/nix-cache")
    machine.succeed("rm -f /etc/nginx/sites-enabled/default",
                    "install -d -o www-data -g www-data /srv/nix-cache-http",
                    "systemctl start nginx.service")


def install(machine: Machine) -> None:
    """The guide's configure and apply steps, with the tests' additions between them."""
    machine.succeed(doc.step("configure"), timeout=600)
    machine.succeed(TEST_CONFIG_EDIT)
    setup_http_cache(machine)
    machine.succeed(doc.step("apply"), timeout=600)


class GuestService:
    """A service inside a VM, seen as a "cache machine" by vm-tests/scenarios: shutdown and
    start stop and start the unit; it is not enabled, so it stays down across a reboot of
    the VM until started."""

    def __init__(self, vm: Machine, unit: str) -> None:
        self.vm = vm
        self.unit = unit
        self.name = f"{vm.name}:{unit}"

    def succeed(self, *commands: str, timeout: int | None = None) -> str:
        return self.vm.succeed(*commands, timeout=timeout)

    def fail(self, *commands: str, timeout: int | None = None) -> str:
        return self.vm.fail(*commands, timeout=timeout)

    def wait_for_unit(self, unit: str, timeout: int = 900) -> None:
        self.vm.wait_for_unit(unit, timeout)

    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str:
        return self.vm.wait_until_succeeds(command, timeout)

    def crash(self) -> None:
        self.vm.succeed(f"systemctl kill --signal=SIGKILL {shlex.quote(self.unit)}")

    def start(self) -> None:
        self.vm.succeed(f"systemctl start {shlex.quote(self.unit)}")

    def shutdown(self) -> None:
        self.vm.succeed(f"systemctl stop {shlex.quote(self.unit)}")


def unit_state(machine: Machine, unit: str) -> str:
    return machine.get_unit_info(unit).get("ActiveState", "")


def socket_activation(machine: Machine, cache_url: str) -> steps.Built:
    """The daemon does not run until the first build: the hook writes a spool entry and
    connects to nothing, and the path unit (enabled by the guide's `enable` of the service,
    `Also=`) starts the daemon."""
    machine.wait_for_unit(steps.SOCKET_UNIT)
    machine.wait_for_unit(PATH_UNIT)
    # Earlier work may have started it: stop it, socket and path unit keep watching.
    machine.succeed(f"systemctl stop {SERVICE}")
    state = unit_state(machine, SERVICE)
    if state != "inactive":
        raise AssertionError(f"{SERVICE} is {state} before any build")
    built = steps.build(machine, USER_BUILD, "npq-socket-activation")
    machine.wait_for_unit(SERVICE, timeout=300)
    steps.wait_pushed(machine, cache_url, [built], timeout=600)
    return built


def collect_keeps(machine: Machine, prefix: str, built: list[steps.Built]) -> None:
    """`nix-collect-garbage` keeps `built` (rooted) and deletes an unrooted control path added
    just before: so the collection did run, and would have taken an unrooted path."""
    control = machine.succeed(f"echo {prefix}-control $RANDOM$RANDOM > /tmp/{prefix}-control"
                              f" && nix-store --add /tmp/{prefix}-control").strip()
    machine.succeed("nix-collect-garbage", timeout=600)
    machine.fail(f"test -e {shlex.quote(control)}")
    for item in built:
        machine.succeed(f"test -e {shlex.quote(item.path)}")


def signed_by(machine: Machine, cache_url: str, path: str) -> list[str]:
    """The key names of the signatures on `path`'s narinfo in the cache."""
    out = machine.succeed(f"{steps.NIX} path-info --sigs --store {shlex.quote(cache_url)} "
                          f"{shlex.quote(path)}")
    return re.findall(r"\b([A-Za-z0-9._-]+):[A-Za-z0-9+/]{86}==", out)


def user_substitutes(machine: Machine, built: list[steps.Built]) -> None:
    """A normal user gets deleted paths back from the host's configured substituters: the
    generated fragment is what makes the nix-daemon use and trust the cache."""
    steps.delete(machine, built)
    for item in built:
        machine.succeed(f"{USER_ENV} /usr/sbin/runuser -u {USER} -- nix-store --realise "
                        f"{shlex.quote(item.path)}")
        got = machine.succeed(f"cat {shlex.quote(item.path)}")
        if got != item.content:
            raise AssertionError(f"{item.path}: got {got!r}, built {item.content!r}")


def exposure(machine: Machine, unit: str = SERVICE) -> float:
    """systemd's exposure score of a unit (0 = locked down, 10 = exposed)."""
    out = machine.succeed(f"systemd-analyze security --no-pager {shlex.quote(unit)}")
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    if found is None:
        raise AssertionError(f"no exposure level in:\n{out}")
    return float(found.group(1))
