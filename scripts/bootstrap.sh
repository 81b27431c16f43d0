# Sourced by scripts/demo and scripts/test: installs what the project needs on a fresh
# Debian/Ubuntu machine (OS packages only when missing) and a virtualenv in .venv.
set -euo pipefail

NPQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NPQ_VENV="${NPQ_VENV:-$NPQ_ROOT/.venv}"

# Debian package -> a command it provides (checked before installing anything).
NPQ_APT_PACKAGES=(
  "nix-bin:nix-instantiate"
  "nginx-light:nginx"
  "openssh-server:sshd"
  "openssh-client:ssh"
  "systemd:systemd-analyze"
  "iproute2:ip"
  "iptables:iptables"
  "procps:pkill"
  # The fault suite (tests/faults): throwaway users and setpriv (usually already there).
  "passwd:useradd"
  "util-linux:setpriv"
  # The shell hook's durability test (tests/integration/test_shell_hook.py) traces its fsyncs.
  "strace:strace"
  # The Debian VM tests (tests/vm): QEMU under TCG, and debootstrap for the guest image and
  # for the Nix matrix roots (tests/matrix, which also install the packages of this list).
  "qemu-system-x86:qemu-system-x86_64"
  "qemu-utils:qemu-img"
  "debootstrap:debootstrap"
  "e2fsprogs:mke2fs"
  # The monitoring test (tests/integration/test_monitoring.py): a real Prometheus and promtool.
  # On a host running systemd, Debian's package also enables its own prometheus.service
  # (:9090); the test never uses it and runs its own on a free port.
  "prometheus:promtool"
)

npq_sudo() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# npq_apt [pkg:command ...]: install the packages named (default: all of NPQ_APT_PACKAGES).
npq_apt() {
  local missing=() entry pkg cmd wanted=("$@")
  [ "${#wanted[@]}" -gt 0 ] || wanted=("${NPQ_APT_PACKAGES[@]}")
  for entry in "${wanted[@]}"; do
    pkg="${entry%%:*}"; cmd="${entry#*:}"
    if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ]; then missing+=("$pkg"); fi
  done
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then missing+=(python3-venv); fi
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]}" >&2
    npq_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    npq_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
}

npq_venv() {
  local stamp="$NPQ_VENV/.npq-stamp" hash want have=""
  hash="$(sha256sum < "$NPQ_ROOT/pyproject.toml" | cut -d' ' -f1)"
  want="$hash-$*"
  [ -f "$stamp" ] && have="$(cat "$stamp")"
  [ "$have" = "$want" ] && return 0
  # An install with extras also serves a request without them (demo after test).
  [ -z "$*" ] && [ "${have%%-*}" = "$hash" ] && return 0
  echo "bootstrap: creating virtualenv in $NPQ_VENV" >&2
  python3 -m venv "$NPQ_VENV"
  "$NPQ_VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$NPQ_VENV/bin/pip" install -q -e "$NPQ_ROOT$*"
  echo "$want" > "$stamp"
}
