"""The daemon's small helpers: key resolution, sd_notify, LISTEN_FDS, child environment."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from nix_push_queue.commands.daemon import listen_fds
from nix_push_queue.config.model import Target
from nix_push_queue.daemon.main import child_env, resolve_keys
from nix_push_queue.daemon.sdnotify import sd_notify
from nix_push_queue.daemon.storeurl import TargetKeys


def target(name: str, secret: str | None = "/etc/nix/key.sec") -> Target:
    return Target(name=name, url="ssh-ng://builder", secret_key_file=secret,
                  public_key=None, ssh_key_file="/etc/nix/ssh", credentials_file=None,
                  compression=None, compression_level=None,
                  parallel_compression=False, options=(), substitute=False, priority=None,
                  transport="auto", environment_file=None)


def test_credentials_directory_wins_over_configured_paths(tmp_path: Path) -> None:
    (tmp_path / "a-secret-key").write_text("a:xxx")
    (tmp_path / "b-credentials").write_text("[default]")
    keys = resolve_keys([target("a"), target("b", secret=None)], str(tmp_path))
    assert keys["a"] == TargetKeys(str(tmp_path / "a-secret-key"), "/etc/nix/ssh", None)
    assert keys["b"] == TargetKeys(None, "/etc/nix/ssh", str(tmp_path / "b-credentials"))
    assert resolve_keys([target("a")], None)["a"] == TargetKeys("/etc/nix/key.sec",
                                                                  "/etc/nix/ssh", None)


def test_sd_notify_path_and_abstract_sockets() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        path = os.path.join(d, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
            receiver.bind(path)
            assert sd_notify(path, "READY=1\nSTATUS=ok")
            assert receiver.recv(100) == b"READY=1\nSTATUS=ok"
    name = f"npq-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        assert sd_notify("@" + name, "STOPPING=1")
        assert receiver.recv(100) == b"STOPPING=1"
    assert not sd_notify(None, "READY=1")
    assert not sd_notify("/nonexistent/notify", "READY=1")  # never fatal


def test_listen_fds_only_for_this_pid() -> None:
    assert listen_fds({"LISTEN_PID": "42", "LISTEN_FDS": "2"}, 42) == (3, 4)
    assert listen_fds({"LISTEN_PID": "41", "LISTEN_FDS": "1"}, 42) == ()
    assert listen_fds({"LISTEN_FDS": "1"}, 42) == ()
    assert listen_fds({"LISTEN_PID": "42", "LISTEN_FDS": "x"}, 42) == ()


def test_child_env_drops_systemd_variables() -> None:
    env = {"PATH": "/bin", "NIX_STORE_DIR": "/s", "LISTEN_FDS": "1", "LISTEN_PID": "9",
           "NOTIFY_SOCKET": "/run/n", "CREDENTIALS_DIRECTORY": "/run/c"}
    assert child_env(env) == {"PATH": "/bin", "NIX_STORE_DIR": "/s"}


def test_the_daemons_aws_files_come_from_credentials_then_config(tmp_path: Path) -> None:
    from nix_push_queue.config import load_document
    from nix_push_queue.daemon.s3.credentials import aws_files

    config = load_document({"targets": [{"name": "s", "url": "s3://b"}],
                            "service": {"aws_config_file": "/etc/aws/config",
                                        "aws_shared_credentials_file": "/etc/aws/creds"}},
                           "<test>")
    assert aws_files(config, None) == {"AWS_CONFIG_FILE": "/etc/aws/config",
                                       "AWS_SHARED_CREDENTIALS_FILE": "/etc/aws/creds"}
    (tmp_path / "aws-config").write_text("[profile ci]\n")
    assert aws_files(config, str(tmp_path)) == {
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": "/etc/aws/creds"}
