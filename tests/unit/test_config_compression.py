"""Compression settings of a target: the schema's default, and the semantic rules that refuse
what Nix would fail on or ignore (measured on Nix 2.8, 2.26 and 2.34)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.config import load_config, load_document
from nix_push_queue.errors import ConfigError


def _target(**fields: Any) -> Any:
    url = fields.pop("url", "file:///srv/cache")
    return load_document({"targets": [{"name": "c", "url": url, **fields}]}).targets[0]


def test_binary_caches_default_to_zstd_one_thread_methods_level() -> None:
    target = _target()
    assert (target.compression, target.compression_level, target.parallel_compression) == (
        "zstd", None, False)


@pytest.mark.parametrize(("fields", "ok"), [
    ({"compression": "xz", "compression_level": 0}, True),
    ({"compression": "xz", "compression_level": 9, "parallel_compression": True}, True),
    ({"compression_level": 19, "parallel_compression": True}, True),
    ({"compression": "bzip2", "compression_level": 1}, True),
    ({"compression": "xz", "compression_level": 12}, False),
    ({"compression_level": 0}, False),
    ({"compression": "bzip2", "parallel_compression": True}, False),
    ({"compression": "none", "compression_level": 3}, False),
    ({"compression": "br", "compression_level": 3}, False),
    ({"compression": "none", "parallel_compression": True}, False),
])
def test_levels_and_threads_each_method_takes(fields: dict[str, Any], ok: bool) -> None:
    if ok:
        _target(**fields)
    else:
        with pytest.raises(ConfigError):
            _target(**fields)


def test_refusal_names_file_line_field_and_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("targets:\n  - name: c\n    url: file:///srv/c\n    compression: bzip2\n"
                   "    parallel_compression: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    text = str(info.value)
    assert f"{cfg}:5: targets[0].parallel_compression:" in text
    assert "only xz and zstd" in text and "set parallel_compression to false" in text


def test_ssh_targets_take_the_default_but_refuse_a_chosen_setting() -> None:
    assert _target(url="ssh-ng://builder").compression == "zstd"  # filled, never used
    for fields in ({"compression": "xz"}, {"compression_level": 3},
                   {"parallel_compression": True}):
        with pytest.raises(ConfigError, match="has no effect on a ssh-ng:// target"):
            _target(url="ssh-ng://builder", **fields)
