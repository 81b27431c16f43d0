"""The matrix runner's argument handling: which legs, and how a user's -m combines with ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.matrix.roots import HOST_ONLY, RootError, bootstrap_packages
from tests.matrix.run import pick, split_markexpr, with_marker


@pytest.mark.parametrize(("args", "expr", "rest"), [
    ([], None, []),
    (["-x", "tests/unit"], None, ["-x", "tests/unit"]),
    (["-m", "not vm", "-x"], "not vm", ["-x"]),
    (["-msoak"], "soak", []),
    (["--markexpr=soak", "-k", "m"], "soak", ["-k", "m"]),
    (["-m", "a", "-m", "b"], "b", []),  # pytest: the last -m wins
])
def test_split_markexpr(args: list[str], expr: str | None, rest: list[str]) -> None:
    assert split_markexpr(args) == (expr, rest)


def test_user_marker_is_anded_with_the_legs() -> None:
    assert with_marker(None, "nix") == ["-m", "nix"]
    assert with_marker("not vm", "not nix") == ["-m", "(not vm) and (not nix)"]


def test_pick_legs() -> None:
    assert [s.name for s in pick("all")] == ["bookworm", "trixie", "sid"]
    assert [s.name for s in pick("")] == ["bookworm", "trixie", "sid"]
    assert pick("host") == []
    assert [s.name for s in pick("2.34,bookworm")] == ["sid", "bookworm"]
    assert [s.nix for s in pick("2.26")] == ["2.26"]
    with pytest.raises(RootError, match="unknown suite 'jessie'"):
        pick("jessie")


def test_roots_get_the_bootstrap_packages_but_not_the_vm_ones(tmp_path: Path) -> None:
    real = bootstrap_packages()
    assert "nginx-light" in real and "openssh-server" in real
    assert not HOST_ONLY & set(real)
    script = tmp_path / "bootstrap.sh"
    script.write_text('X=1\nNPQ_APT_PACKAGES=(\n  "a-b:ab"\n  # "commented:out"\n'
                      '  "qemu-utils:qemu-img"\n  "c2:c"\n)\nOTHER=("d:d")\n')
    assert bootstrap_packages(script) == ("a-b", "c2")
