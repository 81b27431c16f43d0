"""Compression as the schema sets it, through the real `nix copy` of each Nix of the matrix.

The default (zstd) must substitute back on every Nix; `compression_level` and
`parallel_compression` must reach Nix as parameters it reads (no "unknown setting", and a
level changes what it writes).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from nix_push_queue.daemon.storeurl import TargetKeys, store_url
from nix_push_queue.nix.isolated import IsolatedNix

from ..fixtures.upload import (
    SigningKey,
    build,
    delete_and_substitute,
    make_config,
    target_doc,
    upload,
)

pytestmark = pytest.mark.integration


def _real_content(nix: IsolatedNix, tmp_path: Path) -> Path:
    """A store path of a real executable (this Python) and its text: compressible bytes."""
    src = tmp_path / "content"
    src.mkdir()
    shutil.copyfile(sys.executable, src / "python")
    shutil.copyfile(Path(shutil.__file__), src / "shutil.py")
    return Path(nix.run(["nix-store", "--add", str(src)]).stdout.strip())


def _copy(nix: IsolatedNix, url: str, path: Path) -> tuple[str, int]:
    """`nix copy` to a fresh file:// cache: Nix's stderr and the bytes of the NARs."""
    proc = nix.run(["nix", "copy", "--to", url, str(path)])
    cache = Path(url.removeprefix("file://").split("?", 1)[0])
    return proc.stderr, sum(f.stat().st_size for f in (cache / "nar").iterdir())


def _delete_and_substitute(nix: IsolatedNix, path: Path, url: str, public_key: str) -> None:
    nix.run(["nix-store", "--delete", str(path)])
    assert not path.exists()
    nix.run(["nix-store", "--realise", str(path), "--option", "substituters", url,
             "--option", "trusted-public-keys", public_key, "--option", "require-sigs", "true"])


def test_default_is_zstd_and_substitutes(nix: IsolatedNix, signing_key: SigningKey,
                                         tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    dep = build(nix, "dep")
    top = build(nix, "top", deps=[dep])
    config = make_config(target_doc("cache", f"file://{cache}", signing_key))
    assert config.targets[0].compression == "zstd"
    result = upload(config, nix, [top.path])
    assert result.kind == "ok", result.message
    nars = sorted(p.name for p in (cache / "nar").iterdir())
    assert len(nars) == 2 and all(n.endswith(".nar.zst") for n in nars), nars
    assert all("Compression: zstd" in p.read_text() for p in cache.glob("*.narinfo"))
    content = delete_and_substitute(nix, top.path, f"file://{cache}", signing_key.public,
                                    also_delete=[dep.path])
    assert content == top.path.read_text() and dep.path.read_text() == dep.content


@pytest.mark.parametrize("method", ["xz", "zstd"])
def test_level_and_parallel_reach_nix(nix: IsolatedNix, signing_key: SigningKey,
                                      tmp_path: Path, method: str) -> None:
    path = _real_content(nix, tmp_path)
    low, high = (0, 9) if method == "xz" else (1, 19)
    sizes = {}
    for level, parallel in ((low, False), (high, True)):
        cache = tmp_path / f"cache-{level}"
        config = make_config(target_doc(
            "cache", f"file://{cache}", signing_key, compression=method,
            compression_level=level, parallel_compression=parallel))
        url = store_url(config.targets[0], TargetKeys.from_target(config.targets[0]))
        assert f"compression-level={level}" in url
        assert ("parallel-compression=true" in url) is parallel
        stderr, sizes[level] = _copy(nix, url, path)
        assert "unknown setting" not in stderr, stderr
        content = (path / "python").read_bytes()
        _delete_and_substitute(nix, path, f"file://{cache}", signing_key.public)
        assert (path / "python").read_bytes() == content
    # Nix read the level: the highest writes fewer bytes than the lowest.
    assert sizes[high] < sizes[low] * 0.9, sizes
