from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nix_push_queue.client import hook
from nix_push_queue.errors import ProtocolError
from nix_push_queue.wire import framing, protocol
from nix_push_queue.wire.protocol import (
    ChangedReply,
    DropRequest,
    EnqueueReply,
    EnqueueRequest,
    ErrorReply,
    OkReply,
    PingRequest,
    Reply,
    Request,
    RetryRequest,
    SpoolStats,
    StatusReply,
    StatusRequest,
    TargetStats,
    decode_reply,
    decode_request,
    encode,
)

P = "/nix/store/" + "a" * 32 + "-hello"

REQUESTS: list[Request] = [
    EnqueueRequest((P,), "hook", "/nix/store/" + "b" * 32 + "-hello.drv"),
    EnqueueRequest((), "push"),
    StatusRequest(),
    RetryRequest(),
    RetryRequest("cache", (P,)),
    DropRequest("cache"),
    DropRequest(None, ()),
    PingRequest(),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.op)
def test_request_round_trip(request_: Request) -> None:
    line = encode(request_)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["v"] == 1
    assert decode_request(line) == request_
    assert decode_request(line.rstrip(b"\n")) == request_


REPLIES: list[tuple[protocol.Op, Reply]] = [
    ("enqueue", EnqueueReply(3, 1)),
    ("status", StatusReply({"c": TargetStats(1, 2, 3, 4, 5, 6.5, "boom", 17.0),
                            "d": TargetStats(),
                            "s3": TargetStats(dead=2, unsupported="no S3 in this Nix")})),
    ("status", StatusReply({"c": TargetStats()}, SpoolStats(pending=400, quarantined=2))),
    ("status", StatusReply({}, SpoolStats(error="spool /x: cannot list the spool"))),
    ("retry", ChangedReply(7)),
    ("drop", ChangedReply(0)),
    ("ping", OkReply()),
    ("enqueue", ErrorReply("bad_path", "not a store path")),
]


@pytest.mark.parametrize(("op", "reply"), REPLIES)
def test_reply_round_trip(op: protocol.Op, reply: Reply) -> None:
    assert decode_reply(encode(reply), op) == reply


def test_reply_with_unknown_error_code_becomes_internal() -> None:
    line = b'{"v":1,"ok":false,"error":"martian","message":"x"}\n'
    assert decode_reply(line, "ping") == ErrorReply("internal", "x")


def test_unknown_fields_are_ignored() -> None:
    line = json.dumps({"v": 1, "op": "ping", "future": [1, 2]}).encode()
    assert decode_request(line) == PingRequest()


@pytest.mark.parametrize(
    ("line", "code", "words"),
    [
        (b"\xff\xfe{}", "bad_request", "UTF-8"),
        (b"{not json", "bad_request", "invalid JSON"),
        (b"[1, 2]", "bad_request", "JSON object"),
        (b'"x"', "bad_request", "JSON object"),
        (b'{"v": NaN, "op": "ping"}', "bad_request", "invalid JSON"),
        (b'{"op": "ping"}', "bad_version", "version None"),
        (b'{"v": 2, "op": "ping"}', "bad_version", "version 2"),
        (b'{"v": true, "op": "ping"}', "bad_version", "version True"),
        (b'{"v": 1.0, "op": "ping"}', "bad_version", "version 1.0"),
        (b'{"v": 1}', "bad_request", "'op'"),
        (b'{"v": 1, "op": 3}', "bad_request", "'op'"),
        (b'{"v": 1, "op": "explode"}', "bad_request", "unknown op"),
        (b'{"v": 1, "op": "enqueue"}', "bad_request", "'paths'"),
        (b'{"v": 1, "op": "enqueue", "paths": "/nix/store/x"}', "bad_request", "'paths'"),
        (b'{"v": 1, "op": "enqueue", "paths": [1]}', "bad_request", "'paths'"),
        (b'{"v": 1, "op": "enqueue", "paths": [], "source": "me"}', "bad_request", "'source'"),
        (b'{"v": 1, "op": "enqueue", "paths": [], "drv": 5}', "bad_request", "'drv'"),
        (b'{"v": 1, "op": "retry", "target": ["a"]}', "bad_request", "'target'"),
        (b'{"v": 1, "op": "drop", "paths": {}}', "bad_request", "'paths'"),
        (b'{"v": 1, "op": "ping"}\n{"v": 1, "op": "ping"}', "bad_request", "more than one"),
        (b"[" * 100_000, "bad_request", "nested"),
    ],
)
def test_decode_errors_are_specific(line: bytes, code: str, words: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_request(line)
    assert info.value.code == code
    assert words in str(info.value)


def test_size_limits() -> None:
    too_many = json.dumps({"v": 1, "op": "enqueue", "paths": ["/x"] * (framing.MAX_PATHS + 1)})
    with pytest.raises(ProtocolError) as info:
        decode_request(too_many.encode())
    assert (info.value.code, info.value.field) == ("too_large", "paths")
    at_limit = decode_request(too_many.replace('"/x",', "", 1).encode())
    assert isinstance(at_limit, EnqueueRequest) and len(at_limit.paths) == 10_000

    huge = b'{"v": 1, "op": "ping", "pad": "' + b"x" * framing.MAX_LINE + b'"}'
    with pytest.raises(ProtocolError) as info:
        decode_request(huge)
    assert info.value.code == "too_large"
    with pytest.raises(ProtocolError):
        encode(EnqueueRequest(tuple("/nix/store/" + "x" * 200 for _ in range(6000))))


def _nested(depth: int, inner: str = "1") -> bytes:
    """A status request whose unknown field `x` makes the message `depth` levels deep."""
    body = '{"a":' * (depth - 2) + inner + "}" * (depth - 2)
    return f'{{"v":1,"op":"status","x":[{body}]}}'.encode()


def test_nesting_is_limited_whatever_the_python() -> None:
    """Python 3.14's json parses any depth (3.11 and 3.13 raised RecursionError at about
    20,000 levels): the decoder sets its own limit, so the same line gets the same answer."""
    assert decode_request(_nested(framing.MAX_DEPTH)) == StatusRequest()
    for depth in (framing.MAX_DEPTH + 1, 5_000, 50_000):
        with pytest.raises(ProtocolError) as info:
            decode_request(_nested(depth))
        assert info.value.code == "bad_request" and "nested deeper" in str(info.value)
    with pytest.raises(ProtocolError) as info:
        decode_reply(b'{"v":1,"ok":true,"x":' + b"[" * 30_000 + b"]" * 30_000 + b"}", "ping")
    assert info.value.code == "bad_request"
    # Brackets inside strings are text, escaped quotes and backslashes included.
    for text in ("[" * 100, '\\"' + "{" * 100, '\\\\' + "[" * 100):
        assert decode_request(_nested(framing.MAX_DEPTH, json.dumps(text))) == StatusRequest()
    with pytest.raises(ProtocolError, match="nested deeper"):
        decode_request(_nested(framing.MAX_DEPTH + 1, json.dumps("\\")))


def test_hook_refuses_a_deep_reply() -> None:
    ok = b'{"v":1,"ok":true,"queued":1,"skipped":0}'
    hook._check_reply(ok)
    with pytest.raises(ValueError, match="nested deeper"):
        hook._check_reply(ok[:-1] + b',"x":' + b"[" * 20_000 + b"]" * 20_000 + b"}")


@pytest.mark.parametrize(
    ("line", "op"),
    [
        (b'{"v": 1, "ok": "yes"}', "ping"),
        (b'{"v": 1, "ok": true}', "enqueue"),
        (b'{"v": 1, "ok": true, "queued": -1, "skipped": 0}', "enqueue"),
        (b'{"v": 1, "ok": true, "queued": true, "skipped": 0}', "enqueue"),
        (b'{"v": 1, "ok": true, "targets": []}', "status"),
        (b'{"v": 1, "ok": true, "targets": {"a": {"pending": 1}}}', "status"),
        (b'{"v": 1, "ok": true, "changed": 1.5}', "retry"),
        (b'{"v": 1, "ok": true, "targets": {}, "spool": []}', "status"),
        (b'{"v": 1, "ok": true, "targets": {}, "spool": {"pending": -1, "quarantined": 0}}',
         "status"),
    ],
)
def test_bad_replies(line: bytes, op: protocol.Op) -> None:
    with pytest.raises(ProtocolError):
        decode_reply(line, op)


def test_wire_enqueue_lines_decode_as_requests() -> None:
    """The hook's stdlib encoder and the typed decoder agree, and chunks respect both limits."""
    drv = "/nix/store/" + "d" * 32 + "-x.drv"
    long_paths = [f"/nix/store/{i:032d}-" + "n" * 211 for i in range(12_000)]
    chunks = framing.enqueue_lines(long_paths, drv, "hook")
    assert len(chunks) > 2
    seen: list[str] = []
    for paths, line in chunks:
        assert len(line) <= framing.MAX_LINE
        decoded = decode_request(line)
        assert decoded == EnqueueRequest(tuple(paths), "hook", drv)
        seen += paths
    assert seen == long_paths
    short = [f"/nix/store/{i:032d}-x" for i in range(25_000)]
    lines = framing.enqueue_lines(short, None, "push")
    assert [len(p) for p, _ in lines] == [10_000, 10_000, 5_000]
    assert framing.enqueue_lines([], None, "hook") == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
request_like = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 2, "1", None])},
    optional={
        "op": st.sampled_from([*protocol.OPS, "nope"]) | json_values,
        "paths": st.lists(st.text()) | json_values,
        "source": st.sampled_from(protocol.SOURCES) | json_values,
        "drv": st.text() | json_values,
        "target": st.text() | json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | request_like.map(lambda d: json.dumps(d).encode()))
def test_decode_never_raises_anything_but_protocol_error(line: bytes) -> None:
    try:
        request = decode_request(line)
    except ProtocolError as exc:
        assert exc.code in protocol.ERROR_CODES
        return
    assert decode_request(encode(request)) == request


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
       st.sampled_from(protocol.OPS))
def test_decode_reply_never_raises_anything_but_protocol_error(line: bytes, op: str) -> None:
    with contextlib.suppress(ProtocolError):
        decode_reply(line, op)  # type: ignore[arg-type]


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@given(json_values, st.integers(0, 6), st.booleans())
def test_too_deep_counts_as_the_parser_nests(value: object, limit: int, ascii_: bool) -> None:
    line = json.dumps(value, ensure_ascii=ascii_).encode()
    assert framing.too_deep(line, limit) == (_depth(value) > limit)
