"""The trust check's report as commands print it and as `status` carries it over the wire."""

from __future__ import annotations

from nix_push_queue.trust import Report
from nix_push_queue.trust.rules import Finding
from nix_push_queue.wire.protocol import StatusReply, decode_reply, encode

FINDING = Finding("/k", "target a's secret key", "root (uid 0), group root", "0644",
                  "readable by others", "`chmod 0600 /k`", "daemon")


def test_report_lines_name_file_owner_mode_and_what_to_do() -> None:
    report = Report((FINDING,), ("x: cannot be read",), 12)
    assert not report.ok and report.only("daemon") == (FINDING,) and not report.only("hook")
    assert report.lines() == [
        "trust: 1 problem(s) in 12 files and directories checked",
        "trust: /k (target a's secret key): owner root (uid 0), group root, mode 0644: "
        "readable by others; `chmod 0600 /k`",
        "trust: note: x: cannot be read"]
    assert Report((), (), 3).lines() == ["trust: ok (3 files and directories checked)"]


def test_status_carries_the_trust_lines_and_older_daemons_none() -> None:
    lines = tuple(Report((FINDING,), (), 1).lines())
    line = encode(StatusReply({}, None, lines))
    assert decode_reply(line.rstrip(b"\n"), "status") == StatusReply({}, None, lines)
    older = decode_reply(encode(StatusReply({})).rstrip(b"\n"), "status")
    assert isinstance(older, StatusReply) and older.trust is None
