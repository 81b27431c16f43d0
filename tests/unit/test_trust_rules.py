"""The trust check's rules, one by one, on stat results (trust/rules.py), and the pieces
that read programs (trust/walk.py). Real files and users: tests/faults/test_trust.py."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from nix_push_queue.trust import rules, walk
from nix_push_queue.trust.rules import Owners

DIR, FILE = stat.S_IFDIR, stat.S_IFREG
OWNERS = Owners(store_dir="/nix/store", store_uid=30000, daemon_uids=frozenset({900}),
                daemon_gids=frozenset({901}))


@dataclass(frozen=True)
class St:
    st_mode: int
    st_uid: int = 0
    st_gid: int = 0


def test_code_root_owned_and_not_writable_passes() -> None:
    assert rules.code("/usr/bin/python3", St(FILE | 0o755), OWNERS, "x") is None
    assert rules.code("/usr", St(DIR | 0o755), OWNERS, "x") is None


def test_code_owned_by_a_user_is_refused_with_owner_and_mode() -> None:
    found = rules.code("/home/alice/venv", St(DIR | 0o755, 1000, 1000), OWNERS, "a venv")
    assert found is not None and found.role == "hook"
    assert "not owned by root" in found.problem and found.mode == "0755"
    assert "uid 1000" in found.owner and "/opt" in found.fix


def test_code_writable_by_group_or_others_is_refused() -> None:
    other = rules.code("/x/bin/npq", St(FILE | 0o757), OWNERS, "exe")
    group = rules.code("/x/bin", St(DIR | 0o775, 0, 1000), OWNERS, "dir")
    assert other is not None and "writable by others" in other.problem
    assert group is not None and "writable by group" in group.problem
    assert "chmod go-w /x/bin" in group.fix


def test_code_root_sticky_directory_passes_but_a_users_does_not() -> None:
    assert rules.code("/tmp", St(DIR | 0o1777), OWNERS, "dir") is None
    assert rules.code("/tmp/u", St(DIR | 0o1777, 1000), OWNERS, "dir") is not None
    assert rules.code("/tmp/f", St(FILE | 0o1777), OWNERS, "file") is not None  # dirs only


def test_code_store_paths_may_belong_to_the_stores_owner_elsewhere_not() -> None:
    assert rules.code("/nix/store/abc-npq/bin/npq", St(FILE | 0o555, 30000), OWNERS, "x") is None
    assert rules.code("/nix/store", St(DIR | 0o1775, 30000, 30000), OWNERS, "x") is None
    assert rules.code("/nix/store/abc-npq", St(DIR | 0o775, 30000), OWNERS, "x") is not None
    assert rules.code("/nix", St(DIR | 0o755, 30000), OWNERS, "x") is not None


def test_config_file_is_root_owned_and_not_writable_by_others() -> None:
    assert rules.config_file("/etc/c.json", St(FILE | 0o644), OWNERS, "c") is None
    found = rules.config_file("/etc/c.json", St(FILE | 0o666), OWNERS, "c")
    assert found is not None and found.role == "daemon" and "chmod go-w" in found.fix
    assert rules.config_file("/etc/c.json", St(FILE | 0o644, 1000), OWNERS, "c") is not None


def test_secret_key_readable_by_root_and_the_daemon_only() -> None:
    assert rules.secret_key("/k", St(FILE | 0o600), OWNERS, "k") is None
    assert rules.secret_key("/k", St(FILE | 0o400, 900), OWNERS, "k") is None  # the daemon's
    assert rules.secret_key("/k", St(FILE | 0o640, 0, 901), OWNERS, "k") is None  # its group
    world = rules.secret_key("/k", St(FILE | 0o644), OWNERS, "k")
    assert world is not None and "readable by others" in world.problem
    assert "chmod 0600 /k" in world.fix
    assert rules.secret_key("/k", St(FILE | 0o640, 0, 1000), OWNERS, "k") is not None
    assert rules.secret_key("/k", St(FILE | 0o600, 1000), OWNERS, "k") is not None


def test_daemon_dir_not_writable_by_others() -> None:
    assert rules.daemon_dir("/var/lib/q", St(DIR | 0o700, 900), OWNERS, "q") is None
    assert rules.daemon_dir("/var/lib/q", St(DIR | 0o770, 900, 901), OWNERS, "q") is None
    found = rules.daemon_dir("/var/lib/q", St(DIR | 0o777, 900), OWNERS, "q")
    assert found is not None and "writable by others" in found.problem
    assert rules.daemon_dir("/var/lib/q", St(DIR | 0o770, 900, 1000), OWNERS, "q") is not None
    assert rules.daemon_dir("/var/lib/q", St(DIR | 0o700, 1000), OWNERS, "q") is not None
    assert rules.daemon_dir("/tmp", St(DIR | 0o1777), OWNERS, "q") is None


def test_daemon_dir_of_a_dynamic_user() -> None:
    dynamic = Owners(dynamic_user=True)
    assert rules.daemon_dir("/var/lib/private/q", St(DIR | 0o700, 61300), dynamic, "q") is None
    assert rules.daemon_dir("/var/lib/private/q", St(DIR | 0o700, 61300), OWNERS, "q") \
        is not None


def test_resolve_follows_symlinks_into_their_directories(tmp_path: Path) -> None:
    real = tmp_path / "home" / "alice" / "venv" / "bin"
    real.mkdir(parents=True)
    (real / "npq").write_text("#!/bin/sh\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "npq").symlink_to(real / "npq")
    chain = walk.resolve(str(tmp_path / "bin" / "npq"))
    assert chain.target == str(real / "npq")
    assert str(tmp_path / "bin") in chain.dirs and str(tmp_path / "home" / "alice") in chain.dirs
    assert chain.dirs[0] == "/"
    missing = walk.resolve(str(tmp_path / "nope" / "x"))
    assert missing.target is None and missing.dirs[-1] == str(tmp_path)


def test_shebang_and_exec_lines(tmp_path: Path) -> None:
    script = tmp_path / "s"
    script.write_text("#!/opt/v/bin/python3 -I\nimport x\n")
    assert walk.shebang(str(script)) == ["/opt/v/bin/python3", "-I"]
    script.write_bytes(b"\x7fELF...")
    assert walk.shebang(str(script)) is None
    wrapper = ("#!/bin/sh\n# exec /not/this\nexec /usr/local/bin/nix-push-queue hook \\\n"
               "  --socket '/run/a b' \\\n  --timeout 5\n"
               'exec -a "$0" "/nix/store/x-npq/bin/.npq-wrapped"  "$@"\n'
               'OUT_PATHS=${outs# } DRV_PATH=$drv exec /opt/npq/bin/npq hook\n'
               '/usr/bin/ln -sfn -t "$roots" -- $outs 2>/dev/null ||\n')
    assert walk.commands(wrapper) == [
        ["/usr/local/bin/nix-push-queue", "hook", "--socket", "/run/a b", "--timeout", "5"],
        ["/nix/store/x-npq/bin/.npq-wrapped", "$@"], ["/opt/npq/bin/npq", "hook"],
        ["/usr/bin/ln", "-sfn", "-t", "$roots", "--", "$outs", "2>/dev/null", "||"]]
    assert "/usr/bin/ln" in walk.absolute_words(wrapper)
    assert walk.absolute_words('text=$(/usr/bin/head -c 9 -- "$drv")') == ["/usr/bin/head"]
    # Not exec'd (a hook that must not fail the build if it cannot start), still a command:
    assert walk.commands("OUT_PATHS=${outs# } DRV_PATH=$drv /opt/x/npq hook \\\n  --t 5 ||\n"
                         "  say failed\n") == [["/opt/x/npq", "hook", "--t", "5", "||"]]
    assert "/not/this" not in walk.absolute_words(wrapper)
    assert walk.is_shell(["/bin/sh"]) and walk.is_shell(["/usr/bin/env", "bash"])
    assert walk.is_python("/usr/bin/python3.11") and not walk.is_python("/bin/sh")
