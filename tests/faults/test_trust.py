"""The trust check on real files, real users and real permissions (docs/security.md).

Each unsafe layout the issue names is built for real and refused with its message: a
world-writable executable, a group-writable parent, a user-owned venv, a symlink into a
user's home, a world-readable secret key and a spool directory writable by others. The
install guide's layout (a venv in /opt, a link in /usr/local/bin: docs/non-nixos.md) and the
NixOS module's (everything in the store) pass. The rules one by one: tests/unit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nix_push_queue.config import load_document
from nix_push_queue.nix.isolated import IsolatedNix
from nix_push_queue.trust import Subjects, check, owners_for
from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.faults import User, needs_root, throwaway_group, throwaway_user

pytestmark = [pytest.mark.integration, needs_root]

NPQ = str(Path(sys.executable).parent / "nix-push-queue")
REPO = Path(__file__).resolve().parents[2]


def npq(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NPQ, *map(str, args)], capture_output=True, text=True, timeout=300,
                          check=False, env=env)


def write_config(path: Path, doc: dict[str, object]) -> Path:
    path.write_text(json.dumps(doc), "utf-8")
    return path


@pytest.fixture
def layout() -> Iterator[Path]:
    """A root-owned directory with a config whose queue lives inside it. Others can reach it:
    pytest's own temporary root is root's alone, which would shield the queue below it."""
    tmp_path = Path(tempfile.mkdtemp(prefix="npq-trust-", dir="/tmp"))
    tmp_path.chmod(0o755)
    (tmp_path / "srv").mkdir()
    write_config(tmp_path / "c.json", {
        "targets": [{"name": "a", "url": f"file://{tmp_path / 'cache'}"}],
        "queue": {"state_dir": str(tmp_path / "state"), "spool_dir": str(tmp_path / "spool"),
                  "socket": str(tmp_path / "q.sock")},
        "service": {"user": "root"}})
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def console_script(path: Path, mode: int = 0o755) -> Path:
    """A copy of this checkout's console script (its #! names this venv's Python)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(NPQ, path)
    path.chmod(mode)
    return path


def generate(layout: Path, executable: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return npq("generate", layout / "c.json", "--out", layout / "out", "--executable",
               executable, *extra)


def refused(result: subprocess.CompletedProcess[str], path: Path | str, *words: str) -> str:
    """The trust line naming `path`; the command exited 15 (TrustError)."""
    assert result.returncode == 15, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith(
        (f"trust: {path} (", f"nix-push-queue generate: trust: {path} (",
         f"nix-push-queue validate: trust: {path} ("))]
    assert lines, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_world_writable_executable_is_refused_then_allowed_with_a_warning_each_run(
        layout: Path) -> None:
    exe = console_script(layout / "evil" / "bin" / "nix-push-queue", 0o777)
    line = refused(generate(layout, exe), exe, "mode 0777", "writable by others",
                   f"chmod go-w {exe}", "owner root (uid 0)")
    assert "the hook's executable" in line
    assert not (layout / "out").exists()
    for _ in range(2):  # and says so on every run
        allowed = generate(layout, exe, "--allow-untrusted-hook")
        assert allowed.returncode == 0, allowed.stderr
        assert f"warning: trust: {exe} (the hook's executable)" in allowed.stderr
    wrapper = (layout / "out/etc/nix-push-queue/post-build-hook").read_text()
    assert str(exe) in wrapper


def test_group_writable_parent_is_refused() -> None:
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"npq-trust-{os.getpid()}"
    base.mkdir(mode=0o755)
    try:
        with throwaway_group() as group:
            opt = base / "opt"
            exe = console_script(opt / "bin" / "nix-push-queue")
            shutil.chown(opt, group=group)
            opt.chmod(0o775)
            write_config(base / "c.json", {"targets": [{"name": "a", "url": "file:///srv/c"}]})
            refused(generate(base, exe), opt, f"group {group}", "mode 0775",
                    "a directory above the hook's executable", f"chmod go-w {opt}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def user() -> Iterator[User]:
    with throwaway_user("npqt") as made:
        yield made


def test_user_owned_venv_is_refused(layout: Path, user: User) -> None:
    venv = layout / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    script = venv / "bin" / "nix-push-queue"
    script.write_text(f"#!{venv}/bin/python\nfrom nix_push_queue.cli import main\nmain()\n")
    script.chmod(0o755)
    subprocess.run(["chown", "-R", f"{user.name}:{user.name}", str(venv)], check=True)
    refused(generate(layout, script), venv, f"owner {user.name} (uid {user.uid})",
            "not owned by root", "/opt")


def test_symlink_into_a_users_home_is_refused(layout: Path, user: User) -> None:
    home = layout / "home" / user.name
    real = console_script(home / ".local" / "bin" / "nix-push-queue")  # root's file, even
    shutil.chown(home, user.name, user.name)
    link = layout / "usr" / "local" / "bin" / "nix-push-queue"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    line = refused(generate(layout, link), home, f"owner {user.name}", "not owned by root")
    assert f"{link}, through a symlink" in line or f"above the hook's executable {link}" in line


def test_python_import_directory_of_the_hooks_interpreter_is_checked(tmp_path: Path) -> None:
    """The directories come from the hook's own interpreter (a venv with its own
    site-packages), not from this process: a group-writable one there is refused."""
    venv = tmp_path / "opt" / "npq"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "nix_push_queue.pth").write_text(f"{REPO / 'src'}\n")
    script = venv / "bin" / "nix-push-queue"
    script.write_text(f"#!{venv}/bin/python\nfrom nix_push_queue.cli import main\nmain()\n")
    script.chmod(0o755)
    owners = owners_for(None)
    assert check(Subjects(command=[str(script)]), owners).ok
    (site / "nix_push_queue.pth").chmod(0o666)
    report = check(Subjects(command=[str(script)]), owners)
    assert [f.path for f in report.findings] == [str(site / "nix_push_queue.pth")]
    assert "imports from" in report.findings[0].what


def test_world_readable_secret_key_is_refused(layout: Path, nix: IsolatedNix) -> None:
    secret, public = nix.generate_key("trust-1", layout / "srv")
    doc = json.loads((layout / "c.json").read_text())
    doc["targets"][0].update(secret_key_file=str(secret), public_key=public)
    write_config(layout / "c.json", doc)
    assert npq("validate", layout / "c.json", env=nix.env()).returncode == 0
    secret.chmod(0o644)
    line = refused(npq("validate", layout / "c.json", env=nix.env()), secret,
                   "mode 0644", "readable by others", f"chmod 0600 {secret}")
    assert "target a's secret key" in line
    refused(generate(layout, Path(NPQ)), secret, "readable by others")


def test_spool_directory_writable_by_others_is_refused(layout: Path, nix: IsolatedNix) -> None:
    spool = layout / "spool"
    spool.mkdir(mode=0o700)
    assert npq("validate", layout / "c.json", env=nix.env()).returncode == 0
    spool.chmod(0o777)
    refused(npq("validate", layout / "c.json", env=nix.env()), spool, "mode 0777",
            "writable by others", "instructions to upload", f"chmod o-w {spool}")


def test_a_queue_behind_a_root_only_directory_passes_whoever_owns_it(
        layout: Path, nix: IsolatedNix) -> None:
    """systemd's DynamicUser layout, stopped: /var/lib/nix-push-queue links to
    /var/lib/private/nix-push-queue (private: 0700 root), left owned by an unused uid. Only
    root can reach it, so it passes; the same directory anywhere reachable is refused."""
    private = layout / "lib" / "private"
    state = private / "nix-push-queue"
    state.mkdir(parents=True)
    private.chmod(0o700)
    os.chown(state, 65534, 65534)
    (layout / "lib" / "nix-push-queue").symlink_to("private/nix-push-queue")
    config = write_config(layout / "dynamic.json", {
        "targets": [{"name": "a", "url": f"file://{layout / 'cache'}"}],
        "queue": {"state_dir": str(layout / "lib" / "nix-push-queue"),
                  "spool_dir": str(layout / "lib" / "nix-push-queue" / "spool"),
                  "socket": str(layout / "q.sock")}})
    assert npq("validate", config, env=nix.env()).returncode == 0
    private.chmod(0o755)
    refused(npq("validate", config, env=nix.env()), state, "not owned by root or the daemon")


@pytest.fixture(scope="module")
def guide_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/non-nixos.md step 2, under a temporary root: `python3 -m venv /opt/...` and
    `pip install` of this checkout's wheel, as root (dependencies left out: offline)."""
    root = tmp_path_factory.mktemp("guide")
    wheels = root / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", "--wheel-dir", str(wheels), str(REPO)],
                   check=True, timeout=300)
    venv = root / "opt" / "nix-push-queue"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--no-deps",
                    *map(str, wheels.glob("*.whl"))], check=True, timeout=300)
    link = root / "usr" / "local" / "bin" / "nix-push-queue"
    link.parent.mkdir(parents=True)
    link.symlink_to(venv / "bin" / "nix-push-queue")
    return link


def test_the_install_guides_layout_passes(guide_venv: Path, layout: Path,
                                          nix: IsolatedNix) -> None:
    """As docs/non-nixos.md writes it: a venv in /opt, its program linked from /usr/local/bin,
    the key made by nix-store and chmod 0600, the config in a root-owned directory."""
    secret, public = nix.generate_key("guide-1", layout / "srv")
    doc = json.loads((layout / "c.json").read_text())
    doc["targets"][0].update(secret_key_file=str(secret), public_key=public)
    write_config(layout / "c.json", doc)
    out = layout / "out"
    result = npq("generate", layout / "c.json", "--out", out, "--prefix", out,
                 "--executable", guide_venv, "--include-into", nix.conf_file)
    assert result.returncode == 0, result.stderr
    assert "trust" not in result.stderr
    checked = npq("validate", out / "etc/nix-push-queue/config.json", env=nix.env())
    assert checked.returncode == 0, checked.stderr
    summary = next(line for line in checked.stdout.splitlines() if line.startswith("trust:"))
    assert summary.startswith("trust: ok (")
    # What was checked reaches the venv's package and the interpreter behind its link.
    report = check(Subjects(wrapper=str(out / "etc/nix-push-queue/post-build-hook")),
                   owners_for(None))
    assert report.ok, report.lines()
    assert report.checked > 50
    assert not report.notes, report.notes


def test_the_nixos_modules_layout_passes_in_a_store(tmp_path: Path, nix: IsolatedNix,
                                                    user: User) -> None:
    """Everything the NixOS module installs is a store path. Built here as its derivation
    does (generate --flavor nixos --prefix $out), added to an isolated store, whose
    owner is then a plain user as in a single-user install: the store's owner is trusted
    for paths in the store, and the same tree outside the store is refused."""
    package = tmp_path / "pkg"
    (package / "bin").mkdir(parents=True)
    # Like nixpkgs' makeWrapper: a sh script exec'ing the real program.
    (package / "bin" / "nix-push-queue").write_text(
        f'#!/bin/sh\nexec -a "$0" {sys.executable} -m nix_push_queue "$@"\n')
    (package / "bin" / "nix-push-queue").chmod(0o755)
    pkg = nix.run(["nix-store", "--add", str(package)]).stdout.strip()
    write_config(tmp_path / "settings.json", {"targets": [{"name": "a", "url": "file:///c"}],
                                              "nix": {"store_dir": str(nix.store_dir)}})
    out = tmp_path / "generated"
    made = npq("generate", tmp_path / "settings.json", "--flavor", "nixos", "--out", out,
               "--prefix", out, "--executable", f"{pkg}/bin/nix-push-queue")
    assert made.returncode == 0, made.stderr
    generated = nix.run(["nix-store", "--add", str(out)]).stdout.strip()
    wrapper = f"{generated}/etc/nix-push-queue/post-build-hook"
    # The wrapper in the store names the pre-add prefix; point it at the store copy, as a
    # derivation's $out would be.
    text = Path(wrapper).read_text().replace(str(out), generated)
    assert f"{pkg}/bin/nix-push-queue" in text
    config = load_document({"targets": [{"name": "a", "url": "file:///c"}],
                            "nix": {"store_dir": str(nix.store_dir)}}, "<test>")
    for path in (nix.store_dir, pkg, generated):
        subprocess.run(["chown", "-R", "-h", f"{user.name}:{user.name}", str(path)],
                       check=True)
    owners = owners_for(config)
    assert owners.store_uid == user.uid
    report = check(Subjects(wrapper=wrapper, config_file=f"{generated}/etc/nix-push-queue/"
                            "config.json"), owners)
    assert report.ok, report.lines()
    assert report.checked > 20  # the wrapper, the package, /bin/sh, Python and its imports
    outside = tmp_path / "copy"
    shutil.copytree(pkg, outside, symlinks=True)
    subprocess.run(["chown", "-R", f"{user.name}:{user.name}", str(outside)], check=True)
    elsewhere = check(Subjects(command=[f"{outside}/bin/nix-push-queue"]), owners)
    assert [f.path for f in elsewhere.findings][:1] == [str(outside)]


def wait_trust(harness: DaemonHarness, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        doc = json.loads(harness.cli("status", "--json").stdout)
        if doc.get("trust") is not None:
            lines: list[str] = doc["trust"]
            return lines
        assert time.monotonic() < deadline, "the daemon never reported its trust check"
        time.sleep(0.2)


def test_daemon_checks_at_start_logs_and_status_shows_it(
        npq_daemon_factory: Callable[..., DaemonHarness]) -> None:
    good = npq_daemon_factory()
    good.start()
    lines = wait_trust(good)
    assert lines[0].startswith("trust: ok ("), lines
    assert "trust: ok (" in good.log_text()
    plain = good.cli("status").stdout
    assert "trust: ok (" in plain

    bad = npq_daemon_factory(hook=False)
    bad.secret_key.chmod(0o644)
    bad.start()
    lines = wait_trust(bad)
    assert lines[0].startswith("trust: 1 problem(s)"), lines
    assert any(f"{bad.secret_key} (target local's secret key)" in line
               and "readable by others" in line for line in lines), lines
    assert f"ERROR nix_push_queue.daemon.trusted: trust: {bad.secret_key}" in bad.log_text()


def test_every_program_a_sh_wrapper_runs_is_checked(tmp_path: Path) -> None:
    """A hook that does more in sh (roots, spool) runs more programs as root: each program
    it names by absolute path is checked, whether it execs it or runs it on the way."""
    ln = console_script(tmp_path / "bin" / "ln", 0o757)
    text = (f"#!/bin/sh\nset -f\nout=${{OUT_PATHS# }}\n{ln} -sfn -t \"$roots\" -- $out\n"
            f"OUT_PATHS=${{outs# }} DRV_PATH=$drv exec {NPQ} hook --timeout 5\n")
    report = check(Subjects(wrapper_text=text), owners_for(None))
    assert [(f.path, f.what) for f in report.findings] == [
        (str(ln), "a program the post-build-hook runs")]
    ln.chmod(0o755)
    fine = check(Subjects(wrapper_text=text), owners_for(None))
    assert fine.ok, fine.lines()
    assert fine.checked > 50  # /bin/sh, ln, the program, its Python and imports


def test_verify_fails_at_the_trust_step(npq_daemon_factory: Callable[..., DaemonHarness]
                                        ) -> None:
    """`verify --config` checks this host first: the hook nix.conf names and the daemon's
    files. A world-readable key fails it before anything is built."""
    d = npq_daemon_factory()
    d.start()
    d.secret_key.chmod(0o644)
    proc = d.cli("verify", check=False)
    assert proc.returncode == 8, (proc.stdout, proc.stderr)  # VerifyFailed
    assert "verify failed at step 'trust'" in proc.stderr
    assert f"{d.secret_key} (target local's secret key)" in proc.stderr
    assert "trust: 1 problem(s)" in proc.stdout
    d.secret_key.chmod(0o600)
    ok = d.cli("verify", check=False)
    assert ok.returncode == 0 and "trust: ok (" in ok.stdout, (ok.stdout, ok.stderr)
