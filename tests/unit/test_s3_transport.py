"""daemon/s3/bucket.py and transport.py with doubles of their two neighbours: a dict-backed
S3 client (the shape of boto3's calls) and a `nix` that writes a binary cache as Nix does
(and refuses a path whose references have no narinfo in the destination, as Nix does).
The real thing (Nix and moto with signature checks) is in tests/integration/test_s3_*.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from nix_push_queue.config.model import Target
from nix_push_queue.daemon.s3.bucket import Bucket, Upload
from nix_push_queue.daemon.s3.credentials import location
from nix_push_queue.daemon.s3.errors import S3Failure
from nix_push_queue.daemon.s3.staging import StagingArea
from nix_push_queue.daemon.s3.transport import S3Transport
from nix_push_queue.daemon.storeurl import TargetKeys
from nix_push_queue.daemon.uploader import UploadFailed
from nix_push_queue.nix import dialect, runner

STORE = "/nix/store"


def sp(c: str) -> str:
    return f"{STORE}/{c * 32}-{c}"


class FakeS3:
    """get_object / head_object / upload_file on a dict; every PUT logged in order."""

    def __init__(self, refuse: str | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts: list[str] = []
        self.refuse = refuse
        self.lock = threading.Lock()

    def _check(self, op: str) -> None:
        if self.refuse:
            raise ClientError({"Error": {"Code": self.refuse},
                               "ResponseMetadata": {"HTTPStatusCode": 403}}, op)

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self._check("GetObject")
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey"},
                               "ResponseMetadata": {"HTTPStatusCode": 404}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self._check("HeadObject")
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "404"},
                               "ResponseMetadata": {"HTTPStatusCode": 404}}, "HeadObject")
        return {}

    def upload_file(self, Filename: str, Bucket: str, Key: str,
                    ExtraArgs: Any = None, Config: Any = None) -> None:
        self._check("PutObject")
        with self.lock:
            self.objects[Key] = Path(Filename).read_bytes()
            self.puts.append(Key)


CLOSURE = {sp("a"): (), sp("b"): (sp("a"),), sp("c"): (sp("a"), sp("b")), sp("d"): (sp("c"),)}


class FakeNix:
    """`nix path-info -r --json` of CLOSURE, and `nix copy --to file://DIR` writing it."""

    def __init__(self) -> None:
        self.copies: list[list[str]] = []

    async def __call__(self, argv: list[str], deadline: float, keys: TargetKeys,
                       what: str) -> runner.CmdResult:
        if "path-info" in argv:
            roots = [a for a in argv if a.startswith(STORE)]
            out = [{"path": p, "references": list(CLOSURE[p]), "narSize": 100,
                    "signatures": []} for p in _closure(roots)]
            return runner.CmdResult(tuple(argv), 0, json.dumps(out), "")
        to = urlsplit(argv[argv.index("--to") + 1])
        assert "compression=zstd" in to.query
        stage = Path(to.path)
        paths = [a for a in argv if a.startswith(STORE)]
        self.copies.append(paths)
        (stage / "nix-cache-info").write_text(f"StoreDir: {STORE}\n")
        for path in sorted(_closure(paths), key=lambda p: len(_closure([p]))):
            narinfo = stage / f"{Path(path).name[:32]}.narinfo"
            if narinfo.exists():
                continue
            for ref in CLOSURE[path]:
                if ref != path and not (stage / f"{Path(ref).name[:32]}.narinfo").exists():
                    raise UploadFailed("permanent", f"reference {ref} is not valid")
            (stage / "nar").mkdir(exist_ok=True)
            (stage / "nar" / f"{path[11:43]}.nar.zst").write_bytes(b"N" * 100)
            refs = " ".join(Path(r).name for r in CLOSURE[path])
            narinfo.write_text(f"StorePath: {path}\nURL: nar/{path[11:43]}.nar.zst\n"
                               f"References: {refs}\nSig: k:x\n")
        return runner.CmdResult(tuple(argv), 0, "", "")


def _closure(roots: Sequence[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(CLOSURE[path])
    return seen


TARGET = Target(name="s3", url="s3://b?endpoint=http://127.0.0.1:9", secret_key_file=None,
                public_key=None, ssh_key_file=None, credentials_file=None,
                compression="zstd", compression_level=None, parallel_compression=False,
                options=(), substitute=False, priority=None, transport="boto3",
                environment_file=None)


def transport(tmp_path: Path, s3: FakeS3, nix: FakeNix, budget: int = 10_000
              ) -> S3Transport:
    where = location(TARGET.url)
    bucket = Bucket(s3, where, "HERE", lambda: "AKIA1")
    return S3Transport(dialect.Dialect(dialect.parse_version("nix (Nix) 2.8.0")), nix,
                       StagingArea(tmp_path / "staging", 1 << 20), lambda t, k: bucket, budget)


def send(t: S3Transport, roots: list[str]) -> int:
    return asyncio.run(t.send(TARGET, TargetKeys(), roots, time.monotonic() + 60))


def test_nars_first_then_narinfos_by_reference_layers(tmp_path: Path) -> None:
    s3, nix = FakeS3(), FakeNix()
    assert send(transport(tmp_path, s3, nix), [sp("d")]) == 4
    narinfos = [k for k in s3.puts if k.endswith(".narinfo")]
    first_narinfo = s3.puts.index(narinfos[0])
    assert all(k.startswith("nar/") for k in s3.puts[:4]) and first_narinfo == 5
    assert s3.puts[4] == "nix-cache-info"
    assert narinfos == [f"{c * 32}.narinfo" for c in "abcd"]
    assert not [p for p in (tmp_path / "staging").rglob("*") if p.is_file()]


def test_what_the_bucket_has_is_seeded_not_uploaded(tmp_path: Path) -> None:
    s3, nix = FakeS3(), FakeNix()
    send(transport(tmp_path, s3, nix), [sp("b")])
    s3.puts.clear()
    # c refers to a and b, which the bucket has: Nix must find their narinfos staged.
    assert send(transport(tmp_path, s3, nix), [sp("d")]) == 2
    assert sorted(s3.puts) == sorted([f"nar/{'c' * 32}.nar.zst", f"nar/{'d' * 32}.nar.zst",
                                      "c" * 32 + ".narinfo", "d" * 32 + ".narinfo"])
    assert send(transport(tmp_path, s3, nix), [sp("d")]) == 0


def test_chunks_under_the_cap_and_concurrent_batches_upload_once(tmp_path: Path) -> None:
    s3, nix = FakeS3(), FakeNix()
    t = transport(tmp_path, s3, nix, budget=200)
    assert send(t, [sp("d")]) == 4
    assert nix.copies == [[sp("a"), sp("b")], [sp("c"), sp("d")]]
    s3b, nixb = FakeS3(), FakeNix()
    tb = transport(tmp_path, s3b, nixb)

    async def both() -> list[int]:
        return list(await asyncio.gather(
            tb.send(TARGET, TargetKeys(), [sp("d")], time.monotonic() + 60),
            tb.send(TARGET, TargetKeys(), [sp("c")], time.monotonic() + 60)))

    assert sum(asyncio.run(both())) == 4  # the second waits for the first, sends the rest
    assert len(s3b.puts) == len(set(s3b.puts)) == 9


def test_a_refused_key_fails_the_whole_target(tmp_path: Path) -> None:
    t = transport(tmp_path, FakeS3(refuse="InvalidAccessKeyId"), FakeNix())
    with pytest.raises(UploadFailed) as caught:
        send(t, [sp("a")])
    assert caught.value.kind == "permanent" and caught.value.target_wide
    assert "refused access key id AKIA1: the key id is unknown there" in str(caught.value)


def test_bucket_put_many_raises_the_first_failure_after_the_rest(tmp_path: Path) -> None:
    s3 = FakeS3()
    bucket = Bucket(s3, location(TARGET.url), "HERE", lambda: None)
    # Two files: put_many uploads concurrently, and k2's file is deleted once it is up.
    (tmp_path / "kept").write_bytes(b"x")
    (tmp_path / "x").write_bytes(b"x")
    bucket.put_many([Upload("k1", tmp_path / "kept"), Upload("k2", tmp_path / "x", True)])
    assert sorted(s3.puts) == ["k1", "k2"] and not (tmp_path / "x").exists()
    assert (tmp_path / "kept").exists()
    assert bucket.traffic.requests == 2 and bucket.traffic.bytes_up == 2
    with pytest.raises(S3Failure, match="PUT k3"):
        bucket.put(Upload("k3", tmp_path / "missing"))
    assert bucket.get_many(["k1", "nope"]) == {"k1": b"x"}
    assert bucket.has("k2") and not bucket.has("nope")
