"""`!include` in nix.conf: idempotent, and reversible byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nix_push_queue.errors import OutputError
from nix_push_queue.generate.include import BACKUP_SUFFIX, add_include, remove_include

FRAGMENT = "/etc/nix/nix-push-queue.conf"
LINE = f"!include {FRAGMENT}"


@pytest.mark.parametrize("original", [
    b"", b"sandbox = true\n", b"sandbox = true", b"# only a comment\n\n",
    b"a = 1\r\nb = 2\r\n", "trusted-users = r\u00e9my\n".encode(),
])
def test_add_then_remove_is_byte_identical(tmp_path: Path, original: bytes) -> None:
    conf = tmp_path / "nix.conf"
    conf.write_bytes(original)
    conf.chmod(0o640)
    assert add_include(conf, FRAGMENT)
    text = conf.read_bytes()
    assert text.splitlines().count(LINE.encode()) == 1
    assert text.startswith(original)  # the user's lines are untouched
    assert conf.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / ("nix.conf" + BACKUP_SUFFIX)).read_bytes() == original
    assert not add_include(conf, FRAGMENT)  # idempotent
    assert conf.read_text().count(LINE) == 1
    assert remove_include(conf, FRAGMENT)
    assert conf.read_bytes() == original
    assert not (tmp_path / ("nix.conf" + BACKUP_SUFFIX)).exists()
    assert not remove_include(conf, FRAGMENT)


def test_missing_file_is_created_and_removed_again(tmp_path: Path) -> None:
    conf = tmp_path / "nix.conf"
    assert add_include(conf, FRAGMENT)
    assert conf.read_text() == LINE + "\n"
    assert remove_include(conf, FRAGMENT)
    assert not conf.exists()
    assert os.listdir(tmp_path) == []


def test_lines_the_user_added_later_are_kept(tmp_path: Path) -> None:
    conf = tmp_path / "nix.conf"
    conf.write_text("a = 1\n")
    add_include(conf, FRAGMENT)
    with conf.open("a") as handle:
        handle.write("b = 2\n")
    remove_include(conf, FRAGMENT)
    assert conf.read_text() == "a = 1\nb = 2\n"
    # The file now differs from the backup, which is therefore kept.
    assert (tmp_path / ("nix.conf" + BACKUP_SUFFIX)).read_text() == "a = 1\n"


def test_backup_is_taken_once(tmp_path: Path) -> None:
    conf = tmp_path / "nix.conf"
    conf.write_text("first\n")
    add_include(conf, FRAGMENT)
    remove_include(conf, "/other.conf")  # no-op
    add_include(conf, "/other.conf")
    assert (tmp_path / ("nix.conf" + BACKUP_SUFFIX)).read_text() == "first\n"


def test_existing_plain_include_counts(tmp_path: Path) -> None:
    conf = tmp_path / "nix.conf"
    conf.write_text(f"include {FRAGMENT}  # mine\n")
    assert not add_include(conf, FRAGMENT)


def test_symlinked_nix_conf_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real.conf").write_text("x = 1\n")
    (tmp_path / "nix.conf").symlink_to(tmp_path / "real.conf")
    with pytest.raises(OutputError, match="symlink"):
        add_include(tmp_path / "nix.conf", FRAGMENT)
    assert (tmp_path / "real.conf").read_text() == "x = 1\n"


def test_fragment_path_nix_cannot_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="whitespace"):
        add_include(tmp_path / "nix.conf", "/my dir/f.conf")
    assert not (tmp_path / "nix.conf").exists()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30),
                max_size=6), st.booleans())
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, lines: list[str],
                             final_newline: bool) -> None:
    conf = tmp_path_factory.mktemp("inc") / "nix.conf"
    original = "\n".join(lines) + ("\n" if final_newline and lines else "")
    conf.write_bytes(original.encode())
    add_include(conf, FRAGMENT)
    add_include(conf, FRAGMENT)
    remove_include(conf, FRAGMENT)
    assert conf.read_bytes() == original.encode()
