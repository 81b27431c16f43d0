"""The writer reads its manifest as untrusted, and runs its last step (`then`) inside the
transaction (writer.py, include.py)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.config import load_document
from nix_push_queue.errors import OutputError
from nix_push_queue.generate import MARKER, GeneratedFile, GenerateOptions, generate_files
from nix_push_queue.generate.include import add_include, check_include
from nix_push_queue.generate.writer import MANIFEST, write_tree


def _files(**doc: Any) -> tuple[GeneratedFile, ...]:
    document = {"targets": [{"name": "a", "url": "file:///c"}], **doc}
    return generate_files(load_document(document), GenerateOptions())


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def plant(root: Path, *entries: str) -> None:
    """A manifest as an attacker writes it: our marker, then entries whose hashes match."""
    lines = [f"# {MARKER}: planted"]
    for entry in entries:
        lines.append(entry if "  " in entry else f"{'0' * 64}  {entry}")
    (root / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).write_text("\n".join(lines) + "\n")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["../victim.txt", "ABSOLUTE", "etc/../../victim.txt",
                                  "./etc/x", "etc//x", ""])
def test_manifest_naming_anything_outside_the_tree_is_refused(tmp_path: Path,
                                                              name: str) -> None:
    root, victim = tmp_path / "out", tmp_path / "victim.txt"
    victim.write_text(f"# {MARKER}\nnot yours\n")
    root.mkdir()
    entry = str(victim) if name == "ABSOLUTE" else name
    plant(root, f"{digest(victim)}  {entry}")
    before = snapshot(root)
    with pytest.raises(OutputError, match="nothing was changed"):
        write_tree(root, _files())
    assert victim.read_text() == f"# {MARKER}\nnot yours\n"
    assert snapshot(root) == before


def test_malformed_manifest_line_is_refused(tmp_path: Path) -> None:
    plant(tmp_path, "not a digest  etc/x")
    with pytest.raises(OutputError, match="not a file of this tree"):
        write_tree(tmp_path, _files())


def test_removal_through_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.conf"
    victim.write_text(f"# {MARKER}\n")
    root.mkdir()
    (root / "etc").mkdir()
    (root / "etc/linked").symlink_to(outside)
    plant(root, f"{digest(victim)}  etc/linked/victim.conf")
    with pytest.raises(OutputError, match="through a symlink"):
        write_tree(root, _files())
    assert victim.exists()


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "etc-nix"
    directory.mkdir()
    (directory / "nix.conf").write_text("substituters =\n")
    if shutil.which("chattr") is None:
        pytest.skip("no chattr here (e.g. the package's test phase in the Nix build)")
    if subprocess.run(["chattr", "+i", str(directory)], check=False).returncode != 0:
        pytest.skip("chattr +i does not work here (needs root on ext4/xfs/btrfs)")
    yield directory
    subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_include_into_an_immutable_directory_fails_the_check(immutable: Path) -> None:
    conf = immutable / "nix.conf"
    with pytest.raises(OutputError, match="nothing was changed"):
        check_include(conf, "/etc/nix/nix-push-queue.conf")
    assert conf.read_text() == "substituters =\n"
    assert sorted(p.name for p in immutable.iterdir()) == ["nix.conf"]


def test_include_already_there_needs_no_write(immutable: Path) -> None:
    subprocess.run(["chattr", "-i", str(immutable)], check=True)
    conf = immutable / "nix.conf"
    add_include(conf, "/etc/nix/nix-push-queue.conf")
    subprocess.run(["chattr", "+i", str(immutable)], check=True)
    check_include(conf, "/etc/nix/nix-push-queue.conf")


@pytest.mark.parametrize("fresh", [True, False])
def test_failing_last_step_puts_the_old_tree_back(tmp_path: Path, fresh: bool) -> None:
    if not fresh:
        write_tree(tmp_path, _files())
    before = snapshot(tmp_path)

    def fail() -> None:
        raise OutputError("the include could not be written")

    with pytest.raises(OutputError, match="include could not"):
        write_tree(tmp_path, _files(queue={"workers": 7}), then=fail)
    assert snapshot(tmp_path) == before


def test_last_step_runs_also_when_nothing_changes(tmp_path: Path) -> None:
    write_tree(tmp_path, _files())
    ran: list[bool] = []
    write_tree(tmp_path, _files(), then=lambda: ran.append(True))
    write_tree(tmp_path, _files(), dry_run=True, then=lambda: ran.append(False))
    assert ran == [True]
