"""pushpaths.top_store_path: what a typed argument names, read as written below the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from nix_push_queue.client.pushpaths import top_store_path
from nix_push_queue.errors import ProtocolError

STORE = "/nix/store"
TOP = f"{STORE}/0123456789abcdfghijklmnpqrsvwxyz-hello"


@pytest.mark.parametrize("arg", [TOP, TOP + "/", TOP + "/bin/hello", "/" + TOP,
                                 TOP.replace("/store/", "//store/./"), TOP + "/./bin//x"])
def test_spellings_of_a_store_path_name_it(arg: str) -> None:
    assert top_store_path(arg, STORE) == TOP


@pytest.mark.parametrize("arg", [TOP + "/../../../etc", TOP + "/bin/../../other",
                                 f"{STORE}/../store/{TOP[len(STORE) + 1:]}/.."])
def test_dotdot_below_the_store_is_refused_not_cut_off(arg: str) -> None:
    with pytest.raises(ProtocolError) as info:
        top_store_path(arg, STORE)
    assert info.value.code == "bad_path" and "'..'" in str(info.value)


def test_links_outside_the_store_are_resolved(tmp_path: Path) -> None:
    link = tmp_path / "result"
    link.symlink_to(TOP)
    assert top_store_path(str(link), STORE) == TOP
    assert top_store_path(str(tmp_path / "x" / ".." / "result"), STORE) == TOP
    assert top_store_path("/etc/passwd", STORE) == "/etc/passwd"  # the caller refuses it
