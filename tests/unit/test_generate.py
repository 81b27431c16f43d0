"""The pure generator: which files, which settings, which problems. Real consumers (Nix,
systemd-analyze, /bin/sh) judge the same output in tests/integration/test_generate_*.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.config import load_document
from nix_push_queue.errors import ConfigError
from nix_push_queue.generate import GenerateOptions, generate, generate_files
from nix_push_queue.generate.escape import (
    Unrepresentable,
    nix_word,
    sd_exec,
    sd_exec_path,
    sd_plain,
    sd_word,
)

KEY = "cache.example.org-1:VOsZss/2s3FybA2rKGT6XeBPtsftE5JFb+7FR9A1Z4w="
SERVICE = "etc/systemd/system/nix-push-queue.service"
SOCKET = "etc/systemd/system/nix-push-queue.socket"
PATH_UNIT = "etc/systemd/system/nix-push-queue.path"
FRAGMENT = "etc/nix/nix-push-queue.conf"
HOOK = "etc/nix-push-queue/post-build-hook"


def _gen(doc: dict[str, Any], **options: Any) -> dict[str, str]:
    return generate(load_document(doc), GenerateOptions(**options))


def _settings(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def _problems(doc: dict[str, Any], **options: Any) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as info:
        generate_files(load_document(doc), GenerateOptions(**options))
    return [(p.file, p.path, p.message) for p in info.value.problems]


def test_consumer_only_host_gets_the_fragment_alone() -> None:
    tree = _gen({"substituters": {"urls": ["https://c.example.org"],
                                  "trusted_public_keys": [KEY]}})
    assert list(tree) == [FRAGMENT]
    assert "post-build-hook" not in tree[FRAGMENT]


def test_producer_tree_and_modes() -> None:
    files = generate_files(load_document({"targets": [{"name": "a", "url": "file:///c"}]}),
                           GenerateOptions())
    modes = {f.path: f.mode for f in files}
    assert modes == {FRAGMENT: 0o644, HOOK: 0o755, SOCKET: 0o644, SERVICE: 0o644,
                     PATH_UNIT: 0o644,
                     "etc/nix-push-queue/config.json": 0o644,
                     "etc/tmpfiles.d/nix-push-queue.conf": 0o644,
                     "etc/sysusers.d/nix-push-queue.conf": 0o644}


def test_hook_disabled_keeps_daemon_drops_hook() -> None:
    tree = _gen({"targets": [{"name": "a", "url": "file:///c"}], "hook": {"enable": False}})
    assert HOOK not in tree and SERVICE in tree
    assert "post-build-hook" not in tree[FRAGMENT]


def test_dynamic_user_and_credentials(tmp_path: Path) -> None:
    secret = tmp_path / "k.sec"
    secret.write_text("cache.example.org-1:TOPSECRETVALUE")
    tree = _gen({"targets": [
        {"name": "a", "url": "ssh-ng://h", "ssh_key_file": "/etc/id", "secret_key_file":
         str(secret), "public_key": KEY},
        {"name": "b", "url": "s3://bucket", "credentials_file": "/etc/aws"},
        {"name": "c", "url": "s3://other", "environment_file": "/etc/aws.env"}],
        "service": {"aws_config_file": "/etc/aws/config",
                    "aws_shared_credentials_file": "/etc/aws/credentials"}})
    service = tree[SERVICE]
    assert _settings(service, "DynamicUser") == ["yes"]
    # the daemon's `nix copy` children are stopped with it, even after a SIGKILL
    assert _settings(service, "KillMode") == ["control-group"]
    assert _settings(service, "LoadCredential") == [
        f"a-secret-key:{secret}", "a-ssh-key:/etc/id", "b-credentials:/etc/aws",
        "c-aws-env:/etc/aws.env", "aws-config:/etc/aws/config",
        "aws-credentials:/etc/aws/credentials"]
    assert not any("TOPSECRETVALUE" in text for text in tree.values())


def test_static_user_gets_state_outside_var_lib_as_read_write_path() -> None:
    doc = {"targets": [{"name": "a", "url": "http://c"}],
           "queue": {"state_dir": "/srv/npq", "spool_dir": "/srv/npq/spool"},
           "service": {"user": "npq", "group": "nixbld"}}
    service = _gen(doc)[SERVICE]
    assert _settings(service, "User") == ["npq"] and _settings(service, "Group") == ["nixbld"]
    assert _settings(service, "StateDirectory") == []
    assert _settings(service, "ReadWritePaths") == ["-/nix/var/nix /srv/npq /srv/npq/spool"]


def test_dynamic_user_cannot_keep_state_outside_var_lib() -> None:
    doc = {"targets": [{"name": "a", "url": "http://c"}], "queue": {"state_dir": "/srv/q"}}
    ((file, path, message),) = _problems(doc)
    assert (file, path) == ("", "queue.state_dir")
    assert "DynamicUser" in message and "service.user" in message


def test_unrepresentable_values_name_their_field() -> None:
    doc = {"targets": [{"name": "a", "url": "file:///c#x", "substitute": True,
                        "public_key": KEY}],
           "nix": {"secret_key_files": ["/etc/my key.pem"]}}
    found = {(f, p) for f, p, _ in _problems(doc, executable="bin/npq")}
    assert found == {("", "targets[0].url"), ("", "nix.secret_key_files[0]"),
                     ("command line", "--executable")}


def test_keep_defaults_false_replaces_the_lists() -> None:
    tree = _gen({"targets": [{"name": "a", "url": "file:///c", "substitute": True,
                              "public_key": KEY, "priority": 10}],
                 "substituters": {"keep_defaults": False, "urls": ["https://x.org"]}})
    assert _settings(tree[FRAGMENT], "substituters ") == [" file:///c?priority=10 https://x.org"]
    assert _settings(tree[FRAGMENT], "trusted-public-keys ") == [f" {KEY}"]


def test_only_file_targets_get_no_network() -> None:
    local = _gen({"targets": [{"name": "a", "url": "file:///c"}]})[SERVICE]
    remote = _gen({"targets": [{"name": "a", "url": "file:///c"},
                               {"name": "b", "url": "https://c"}]})[SERVICE]
    assert _settings(local, "PrivateNetwork") == ["yes"]
    assert _settings(remote, "PrivateNetwork") == []
    assert _settings(remote, "RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6"]


def test_nixos_flavor_and_prefix() -> None:
    tree = _gen({"targets": [{"name": "a", "url": "file:///c"}]}, flavor="nixos",
                prefix="/nix/store/abc-npq-units", executable="/nix/store/xyz-npq/bin/npq")
    assert "lib/systemd/system/nix-push-queue.service" in tree
    assert not any(p.startswith("etc/systemd") for p in tree)
    service = tree["lib/systemd/system/nix-push-queue.service"]
    assert _settings(service, "ExecStart") == [
        "/nix/store/xyz-npq/bin/npq daemon --config "
        "/nix/store/abc-npq-units/etc/nix-push-queue/config.json"]
    assert _settings(tree[FRAGMENT], "post-build-hook ") == [
        " /nix/store/abc-npq-units/etc/nix-push-queue/post-build-hook"]


def test_generate_is_deterministic() -> None:
    doc = {"targets": [{"name": "a", "url": "file:///c"}, {"name": "b", "url": "s3://b"}]}
    assert _gen(doc) == _gen(doc)


@pytest.mark.parametrize(("fn", "value", "expected"), [
    (sd_plain, "/run/a%b", "/run/a%%b"),
    (sd_word, "/srv/a b", '"/srv/a b"'),
    (sd_word, '/srv/"q"\\', '"/srv/\\"q\\"\\\\"'),
    (sd_exec, "/opt/x$y", "/opt/x$$y"),
    (sd_exec, "/opt/my bin/%n", '"/opt/my bin/%%n"'),
    (sd_exec_path, "/opt/$x %n", '"/opt/$x %%n"'),
    (nix_word, "/etc/k.pem", "/etc/k.pem"),
])
def test_escapes(fn: Any, value: str, expected: str) -> None:
    assert fn(value) == expected


@pytest.mark.parametrize(("fn", "value"), [
    (nix_word, "a b"), (nix_word, "a#b"), (sd_plain, "a\nb"), (sd_plain, " lead")])
def test_unrepresentable(fn: Any, value: str) -> None:
    with pytest.raises(Unrepresentable):
        fn(value)
