"""`verify` on an s3:// target that the daemon uploads with boto3: this Nix cannot read a
bucket that checks signatures (it sends unsigned requests, or has no S3 store), so the
steps read a local `file://` copy of the built path's closure, fetched with boto3 and the
target's credentials (daemon/s3/mirror.py). Nix still judges the signature and substitutes
with signatures required, from exactly the bytes the bucket holds.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from ..config.model import Config, Target
from ..daemon.s3.errors import S3Failure
from ..daemon.storeurl import TargetKeys
from ..daemon.transport import choose_all
from ..errors import VerifyFailed
from ..nix import stores

Mirror = Callable[[Target, str], str]


def _mirror_for(root: Path, env: Mapping[str, str]) -> Mirror:
    from ..daemon.s3.mirror import mirror
    from ..daemon.s3.transport import boto3_bucket

    make = boto3_bucket(env)

    def read(target: Target, path: str) -> str:
        dest = root / target.name
        shutil.rmtree(dest, ignore_errors=True)
        try:
            mirror(make(target, TargetKeys.from_target(target)), dest, [path])
        except S3Failure as exc:
            raise VerifyFailed("push", f"reading {target.name} with boto3: {exc}") from exc
        return f"file://{dest}"

    return read


@contextlib.contextmanager
def mirrors(config: Config, targets: Sequence[Target], env: Mapping[str, str],
            write: Callable[[str], None]) -> Iterator[dict[str, Mirror]]:
    """Target name -> Mirror, for the targets the daemon uploads with boto3."""
    s3 = [t for t in targets if stores.is_s3(t)]
    if not s3:
        yield {}
        return
    _, choices = choose_all(s3, config.nix.nix_bin_dir, env)
    boto = [t for t in s3 if choices[t.name].name == "boto3"]
    root = Path(tempfile.mkdtemp(prefix="npq-verify-s3-"))
    try:
        read = _mirror_for(root, env)
        for t in boto:
            write(f"{t.name}: transport {choices[t.name]}; read back with boto3 into a "
                  "local file:// copy\n")
        yield {t.name: read for t in boto}
    finally:
        shutil.rmtree(root, ignore_errors=True)
