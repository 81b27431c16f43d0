"""The hook's json-free codec and re-free .drv parsing agree with json and the old regex.

bench/profiling.py showed `json`, `re` and `socket` (through enum) as a third of the hook's
run; framing.py and hook.py now use the C accelerators and plain string scanning instead. These
tests pin that the output is unchanged and that the heavy modules stay out.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nix_push_queue.client import hook
from nix_push_queue.wire import framing

from . import console_script

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=20,
)


@given(json_values)
def test_encode_is_compact_json_dumps(value: object) -> None:
    assert framing._encode(value) == json.dumps(value, separators=(",", ":"))


@given(json_values | st.floats(allow_nan=False, allow_infinity=False))
def test_loads_is_json_loads(value: object) -> None:
    for text in (json.dumps(value), " " + json.dumps(value, indent=2) + "\n"):
        assert framing.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", '{"a":1} x', "[1,]", "NaN", '{"a":Infinity}', "nul"])
def test_loads_rejects_what_is_not_one_json_document(text: str) -> None:
    with pytest.raises(ValueError):
        framing.loads(text)


# The regex the hook used before; the scanner must accept and extract exactly the same.
_OLD = re.compile(r'Derive\(\[((?:\("[^"\\]*","[^"\\]*","[^"\\]*","[^"\\]*"\),?)*)\]')
_OLD_PATH = re.compile(r'\("[^"\\]*","([^"\\]*)"')


def _old(text: str) -> list[str] | None:
    match = _OLD.match(text)
    return _OLD_PATH.findall(match.group(1)) if match else None


field = st.text(alphabet='ab/.-"\\', max_size=6)
output = st.tuples(field, field, field, field).map(lambda f: "(" + ",".join(
    f'"{x}"' for x in f) + ")")


@given(st.lists(output, max_size=4), st.sampled_from(["],[]", ",],[]", "", "]"]),
       st.sampled_from(["Derive([", "Derive(", "derive(["]))
def test_aterm_scanner_matches_the_old_regex(outs: list[str], tail: str, head: str) -> None:
    text = head + ",".join(outs) + tail
    assert hook._aterm_output_paths(text) == _old(text)


def test_hook_loads_no_json_re_or_socket(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (tmp_path / "var/gcroots").mkdir(parents=True)
    out = f"{store}/{'0' * 32}-out"
    drv = store / f"{'1' * 32}-x.drv"
    drv.write_text(f'Derive([("out","{out}","","")],[],[],"x","/bin/sh",[],[])')
    proc = subprocess.run(
        console_script.command(
            "hook", "--socket", str(tmp_path / "none.sock"), "--spool-dir", str(tmp_path / "sp"),
            "--store-dir", str(store), "--state-dir", str(tmp_path / "var"), "--timeout", "5",
            python_flags=("-X", "importtime")),
        env=console_script.environment(DRV_PATH=str(drv), OUT_PATHS=""),
        capture_output=True, text=True, timeout=120, check=True)
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert hook.__name__ in imported  # the measurement works
    assert imported & {"json", "re", "socket", "enum", "selectors"} == set()
    assert [p.read_text().split() for p in (tmp_path / "sp").glob("*.spool")] == [
        [out, f"{drv}^*"]]
    # ... and rooted it first (wire/gcroots.py is os-only: still nothing heavy imported)
    assert (tmp_path / "var/gcroots/nix-push-queue/" / Path(out).name).readlink() == Path(out)
