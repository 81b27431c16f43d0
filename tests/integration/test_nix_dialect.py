"""nix.dialect and nix.pathinfo on the Nix installed here (the matrix runs this file once per
Nix version): the argv the dialect builds is accepted without deprecation warnings, its
output parses, and post-build-hook's OUT_PATHS is as the dialect says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nix_push_queue.nix import dialect
from nix_push_queue.nix.isolated import IsolatedNix, text_derivation
from nix_push_queue.nix.pathinfo import parse_path_infos, parse_settings

pytestmark = pytest.mark.integration


def _build(nix: IsolatedNix, tag: str) -> tuple[str, str]:
    dep_expr = text_derivation(f"dialect-dep-{tag}", f"dep {tag}")
    (top,) = nix.build_expr(text_derivation(f"dialect-top-{tag}", f"top {tag}",
                                            deps=[dep_expr]))
    (dep,) = nix.build_expr(dep_expr)
    return str(top), str(dep)


def test_path_info_and_config_show_as_the_dialect_spells_them(nix: IsolatedNix,
                                                               tmp_path: Path) -> None:
    d = dialect.detect(None, nix.env())
    print("Nix here:", d.describe())
    top, dep = _build(nix, "argv")
    missing = f"{nix.store_dir}/{'0' * 32}-dialect-missing"
    proc = nix.run(d.path_info_json([top, missing]))
    assert "deprecated" not in proc.stderr and "warning" not in proc.stderr, proc.stderr
    (info,) = parse_path_infos(proc.stdout)
    assert (info.path, info.references) == (top, (dep,))
    assert info.nar_size and info.nar_hash and info.nar_hash.startswith("sha256-")

    secret, public = nix.generate_key("dialect-live-1", tmp_path)
    cache = f"file://{tmp_path / 'cache'}"
    nix.run(d.nix("copy", "--to", f"{cache}?secret-key={secret}", top))
    proc = nix.run(d.path_info_json([top, dep, missing], store=cache))
    assert "deprecated" not in proc.stderr, proc.stderr
    infos = {i.path: i for i in parse_path_infos(proc.stdout)}
    assert set(infos) == {top, dep}
    assert all(i.signed_by(["dialect-live-1"]) for i in infos.values()), public

    shown = nix.run(d.config_show_json())
    assert "deprecated" not in shown.stderr, shown.stderr
    assert parse_settings(shown.stdout)["substituters"] == []


def test_out_paths_filled_as_the_dialect_says(nix: IsolatedNix, tmp_path: Path) -> None:
    """Nix 2.8.0 gives post-build-hook an empty OUT_PATHS; later ones fill it."""
    record = tmp_path / "hook.jsonl"
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\nprintf '{\"out\": \"%s\", \"drv\": \"%s\"}\\n' "
                    f"\"$OUT_PATHS\" \"$DRV_PATH\" >> {record}\n")
    hook.chmod(0o755)
    with nix.conf_file.open("a") as conf:
        conf.write(f"post-build-hook = {hook}\n")
    (out,) = nix.build_expr(text_derivation("dialect-hook", str(tmp_path)))
    (run,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert run["drv"].endswith("-dialect-hook.drv")
    filled = dialect.detect(None, nix.env()).out_paths_filled
    assert run["out"] == (str(out) if filled else "")
