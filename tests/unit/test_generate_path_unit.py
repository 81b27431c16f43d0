"""The .path unit that starts the daemon when a build spools (the hook connects to nothing):
its glob, its escaping, and the spool directories a glob cannot name. systemd itself judges
it in tests/integration/test_generate_systemd.py."""

from __future__ import annotations

from typing import Any

import pytest

from nix_push_queue.config import load_document
from nix_push_queue.errors import ConfigError
from nix_push_queue.generate import GenerateOptions, generate, generate_files
from nix_push_queue.wire.spool import SUFFIX

PATH_UNIT = "etc/systemd/system/nix-push-queue.path"
SERVICE = "etc/systemd/system/nix-push-queue.service"
TARGETS = [{"name": "a", "url": "file:///c"}]


def _path_settings(doc: dict[str, Any]) -> list[str]:
    text = generate(load_document(doc), GenerateOptions())[PATH_UNIT]
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_default_spool_dir_glob_and_install() -> None:
    lines = _path_settings({"targets": TARGETS})
    assert "PathExistsGlob=/var/lib/nix-push-queue/spool/*.spool" in lines
    assert SUFFIX == ".spool"  # the hook's final name (post-build-hook.j2 renames to it)
    assert "Unit=nix-push-queue.service" in lines
    assert "WantedBy=paths.target" in lines
    assert not any(line.startswith("DirectoryNotEmpty=") for line in lines)


def test_enabling_the_service_enables_the_path_unit() -> None:
    service = generate(load_document({"targets": TARGETS}), GenerateOptions())[SERVICE]
    assert "Also=nix-push-queue.socket nix-push-queue.path" in service.splitlines()


def test_spool_dir_specifiers_are_escaped_and_trailing_slash_dropped() -> None:
    lines = _path_settings({"targets": TARGETS,
                            "queue": {"spool_dir": "/var/lib/npq %j/spool/"}})
    assert "PathExistsGlob=/var/lib/npq %%j/spool/*.spool" in lines


def test_consumer_only_host_has_no_path_unit() -> None:
    tree = generate(load_document({"substituters": {"urls": ["https://c.example.org"]}}),
                    GenerateOptions())
    assert PATH_UNIT not in tree


@pytest.mark.parametrize("spool", ["/var/lib/a*b", "/var/lib/a?", "/var/lib/[ab]",
                                   "/var/lib/{a,b}", "/var/lib/a\\b"])
def test_glob_characters_in_spool_dir_are_refused(spool: str) -> None:
    with pytest.raises(ConfigError) as info:
        generate_files(load_document({"targets": TARGETS, "queue": {"spool_dir": spool}}),
                       GenerateOptions())
    [problem] = info.value.problems
    assert problem.path == "queue.spool_dir"
    assert "glob" in problem.message and "choose a directory" in problem.message
