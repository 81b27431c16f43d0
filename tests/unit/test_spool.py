from __future__ import annotations

import errno
import multiprocessing
import os
import stat
import subprocess
from pathlib import Path

import pytest

from nix_push_queue.errors import SpoolError
from nix_push_queue.wire import spool, spool_reader

STORE = "/nix/store"


def sp(i: int) -> str:
    return f"{STORE}/{i:032d}-p"


def test_write_and_read_back(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    file = spool.write_spool(d, [sp(1), sp(2)])
    assert file.startswith(str(d) + "/") and file.endswith(".spool")
    assert stat.S_IMODE(os.stat(file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert Path(file).read_text() == f"{sp(1)}\n{sp(2)}\n"
    assert list(spool_reader.read_spool_files(d, STORE)) == [(file, [sp(1), sp(2)], [])]
    assert [p.name for p in d.iterdir()] == [Path(file).name]  # no temp file left


def test_refuses_multiline_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        spool.write_spool(tmp_path, ["/nix/store/x\n/etc/passwd"])


def test_torn_and_corrupt_lines_are_skipped_valid_kept(tmp_path: Path) -> None:
    (tmp_path / "1-1-a.spool").write_bytes(
        f"{sp(1)}\n\xff\xfe\n/etc/passwd\n\n{sp(2)}\n{sp(3)}".encode("latin-1"))
    (tmp_path / ".2-2-b.tmp").write_text(f"{sp(4)}\n")  # a write in progress: not read
    ((_, good, bad),) = spool_reader.read_spool_files(tmp_path, STORE)
    assert good == [sp(1), sp(2)]
    assert bad == ["\\xff\\xfe", "/etc/passwd", sp(3)]  # sp(3) is torn: no newline
    assert spool_reader.parse_spool(b"/x\nrel\n", None) == (["/x"], ["rel"])


def test_ingest_unlinks_only_after_enqueue_returned(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    first = spool.write_spool(tmp_path, [sp(1)])
    (tmp_path / "9-9-z.spool").write_text("garbage\n")
    got: list[list[str]] = []

    def failing(paths: list[str]) -> None:
        raise RuntimeError("database locked")

    with pytest.raises(RuntimeError):
        spool_reader.ingest_spool(tmp_path, failing, STORE)
    assert os.path.exists(first)  # not committed: kept for the next attempt

    def enqueue(paths: list[str]) -> None:
        assert os.path.exists(first)
        got.append(paths)

    assert spool_reader.ingest_spool(tmp_path, enqueue, STORE) == (2, 1, 1, 1)
    assert got == [[sp(1)]]
    assert [p.name for p in tmp_path.iterdir()] == ["quarantine"]  # the garbage, set aside
    assert [p.name for p in (tmp_path / "quarantine").iterdir()] == ["9-9-z.spool"]
    assert "garbage" in caplog.text
    assert spool_reader.ingest_spool(tmp_path / "missing", enqueue, STORE) == (0, 0, 0, 0)


def test_chowns_to_the_directory_owner_when_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = tmp_path / "spool"
    d.mkdir()
    os.chown(d, 12345, 23456)
    file = spool.write_spool(d, [sp(1)])
    st = os.stat(file)
    assert (st.st_uid, st.st_gid) == (12345, 23456)


def test_read_only_spool_is_a_clear_error(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() == 0:
        # root ignores permission bits: make it a real read-only file system (a bind mount)
        for argv in (["mount", "--bind", str(d), str(d)],
                     ["mount", "-o", "remount,ro,bind", str(d)]):
            if subprocess.run(argv, check=False, capture_output=True).returncode != 0:
                subprocess.run(["umount", str(d)], check=False, capture_output=True)
                pytest.skip("cannot make a read-only bind mount here")
        expected = "EROFS"
    else:
        d.chmod(0o500)
        expected = "EACCES"
    try:
        with pytest.raises(SpoolError) as info:
            spool.write_spool(d, [sp(1)])
        assert str(d) in str(info.value) and expected in str(info.value)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(d)], check=True)
        d.chmod(0o700)


def test_disk_full_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real full disk (a tiny tmpfs) is in the fault suite; here, the message and cleanup.
    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(SpoolError) as info:
        spool.write_spool(tmp_path, [sp(1)])
    assert "ENOSPC" in str(info.value) and "disk is full" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # the temp file is gone


def _writer(directory: str, start: int) -> None:
    for i in range(start, start + 20):
        spool.write_spool(directory, [sp(i), sp(i + 100_000)])


def test_fifty_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), n * 20)) for n in range(50)]
    for proc in procs:
        proc.start()
    ingested: list[str] = []
    # ingest while they write: a reader must never see a partial file
    while any(p.is_alive() for p in procs):
        spool_reader.ingest_spool(tmp_path, ingested.extend, STORE)
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    _, _, bad, aside = spool_reader.ingest_spool(tmp_path, ingested.extend, STORE)
    assert aside == 0
    assert bad == 0
    expected = [sp(i) for i in range(1000)] + [sp(i + 100_000) for i in range(1000)]
    assert sorted(ingested) == sorted(expected)


def _bad_entries(d: Path) -> list[str]:
    """One of each kind of entry named *.spool that cannot be read as a spool file."""
    (d / "10-a-dir.spool").mkdir()
    (d / "11-b-link.spool").symlink_to("/etc/passwd")
    os.mkfifo(d / "12-c-fifo.spool")  # opening it for reading would block
    with open(d / "13-d-big.spool", "wb") as big:
        big.truncate(spool_reader.MAX_FILE + 1)  # sparse: nothing is written
    (d / "14-e-binary.spool").write_bytes(b"\x00\xff" * 100 + b"\n")
    names = ["10-a-dir.spool", "11-b-link.spool", "12-c-fifo.spool", "13-d-big.spool",
             "14-e-binary.spool"]
    if os.geteuid() != 0:  # root reads it anyway
        (d / "15-f-noperm.spool").write_text(f"{sp(9)}\n")
        (d / "15-f-noperm.spool").chmod(0)
        names.append("15-f-noperm.spool")
    return names


def test_bad_entries_are_quarantined_and_the_rest_ingested(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    names = _bad_entries(tmp_path)
    # good files on either side of the bad ones, in mtime order
    first = spool.write_spool(tmp_path, [sp(1)])
    os.utime(first, ns=(1, 1))
    last = spool.write_spool(tmp_path, [sp(2)])
    assert spool_reader.count_spool(tmp_path) == (len(names) + 2, 0)
    got: list[str] = []
    files, paths, _, aside = spool_reader.ingest_spool(tmp_path, got.extend, STORE)
    assert got == [sp(1), sp(2)] and (files, paths) == (3, 2)
    assert aside == len(names)
    assert sorted(p.name for p in (tmp_path / "quarantine").iterdir()) == sorted(names)
    assert [p.name for p in tmp_path.iterdir()] == ["quarantine"]
    assert not os.path.exists(last)
    assert spool_reader.count_spool(tmp_path) == (0, len(names))
    assert "not a regular file (a directory)" in caplog.text
    assert "not a regular file (a symbolic link)" in caplog.text
    assert "not a regular file (a FIFO)" in caplog.text
    assert "larger than" in caplog.text
    # a second name that collides in the quarantine is kept beside the first
    (tmp_path / "10-a-dir.spool").mkdir()
    assert spool_reader.ingest_spool(tmp_path, got.extend, STORE)[3] == 1
    assert len(list((tmp_path / "quarantine").glob("10-a-dir.spool*"))) == 2


def test_entries_that_cannot_be_moved_aside_are_passed_over(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "quarantine").write_text("in the way")  # makedirs fails: ENOTDIR/EEXIST
    (tmp_path / "1-1-dir.spool").mkdir()
    later = spool.write_spool(tmp_path, [sp(3)])
    skipped: set[str] = set()
    got: list[str] = []
    assert spool_reader.ingest_spool(tmp_path, got.extend, STORE, skipped)[3] == 1
    assert got == [sp(3)] and not os.path.exists(later)
    assert skipped == {str(tmp_path / "1-1-dir.spool")}
    assert "passing over it" in caplog.text
    caplog.clear()
    assert spool_reader.ingest_spool(tmp_path, got.extend, STORE, skipped) == (0, 0, 0, 0)
    assert caplog.text == ""  # logged once, not at every poll
    # counted as set aside, not as waiting: `wait` must not wait on it forever
    assert spool_reader.count_spool(tmp_path, skipped) == (0, 1)


def test_reading_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "1-1-f.spool")
    assert spool_reader.read_entry(str(tmp_path / "1-1-f.spool")) == (
        None, "not a regular file (a FIFO)")
    assert list(spool_reader.read_spool_files(tmp_path, STORE)) == []
