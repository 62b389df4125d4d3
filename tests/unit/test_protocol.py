"""Protocol: round trips, version refusal, payload counts, limits, and a fuzzed decoder."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from lama_desktop.cluster import protocol as p

INFO = p.NodeInfo(
    hostname="box",
    os="Linux",
    cpu_model="x",
    cores=8,
    ram_total=16 << 30,
    gpus=[p.GpuInfo(name="RTX", vram_total=8 << 30, index=0)],
    engines={"opencv": "4.9"},
)
MESSAGES: list[tuple[p.Message, int]] = [
    (p.Hello(desktop="d1", name="desk"), 0),
    (p.Ready(node="n1", info=INFO, slots=2, models=["lama", "opencv-ns"], version="0.1.0"), 0),
    (p.Heartbeat(), 0),
    (
        p.Heartbeat(
            metrics=p.Metrics(
                cpu_percent=5.0,
                load1=0.5,
                ram_used=1,
                ram_total=2,
                gpus=[p.GpuMetrics(index=0, util=50.0)],
            )
        ),
        0,
    ),
    (p.Disconnect(reason="bye"), 0),
    (p.Refuse(reason="no", peer_version=1), 0),
    (p.Pair(code="ABCD1234", desktop_name="desk"), 0),
    (p.Paired(node="n1"), 0),
    (
        p.Job(
            job="j1",
            kind="array",
            settings={"model": "opencv-ns", "radius": 4},
            image_name="a.jpg",
            mask_name="a.png",
            shape=[4, 5],
            attempt=2,
        ),
        2,
    ),
    (p.Cancel(job="j1"), 0),
    (p.Result(job="j1", seconds=0.25, worker="w1", ext=".png", shape=None), 1),
    (p.Failed(job="j1", reason="boom", crashed=True), 0),
]


@pytest.mark.parametrize(("msg", "count"), MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip_keeps_every_field(msg: p.Message, count: int) -> None:
    payload = [bytes([i]) * (10 + i) for i in range(count)]
    frames = p.encode(msg, *payload)
    decoded, got = p.decode(frames)
    assert decoded == msg
    assert [bytes(part) for part in got] == payload


def test_decode_accepts_zmq_frames_and_keeps_large_payload_uncopied() -> None:
    image = np.arange(300 * 400 * 3, dtype=np.uint8).reshape(300, 400, 3)
    mask = np.zeros((300, 400), np.uint8)
    job = p.Job(job="j", kind="array", settings={}, image_name="a", mask_name="m", shape=[300, 400])
    frames = p.encode(job, image, mask)
    assert isinstance(frames[1], memoryview) and frames[1].obj is image  # no copy on encode
    msg, payload = p.decode([zmq.Frame(bytes(f)) for f in frames])
    assert msg == job
    back = np.frombuffer(payload[0], np.uint8).reshape(300, 400, 3)
    assert np.array_equal(back, image)


def test_wrong_payload_count_is_refused_both_ways() -> None:
    with pytest.raises(p.ProtocolError, match="payload"):
        p.encode(p.Cancel(job="j"), b"x")
    header = p.encode(p.Result(job="j", seconds=1, worker="w", ext=".png"), b"x")[0]
    with pytest.raises(p.ProtocolError, match="expected 1"):
        p.decode([header])
    with pytest.raises(p.ProtocolError, match="expected 1"):
        p.decode([header, b"a", b"b"])


def test_other_version_raises_version_mismatch_naming_both() -> None:
    header = msgspec.msgpack.encode({"v": 2, "op": "hello", "desktop": "d", "name": "n"})
    with pytest.raises(p.VersionMismatch) as info:
        p.decode([header])
    assert info.value.peer_version == 2
    refusal = p.refusal_for(info.value)
    assert "2" in refusal.reason and str(p.PROTOCOL_VERSION) in refusal.reason
    assert refusal.peer_version == 2


def test_refuse_from_another_version_is_still_readable() -> None:
    header = msgspec.msgpack.encode({"v": 9, "op": "refuse", "reason": "old", "peer_version": 1})
    msg, _ = p.decode([header])
    assert isinstance(msg, p.Refuse) and msg.v == 9 and msg.reason == "old"


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"\xc1",
        msgspec.msgpack.encode({"v": 1, "op": "launch_missiles"}),
        msgspec.msgpack.encode({"v": 1, "op": "hello"}),  # required fields missing
        msgspec.msgpack.encode(
            {
                "v": 1,
                "op": "job",
                "job": "j",
                "kind": "tar",
                "settings": {},
                "image_name": "a",
                "mask_name": "b",
            }
        ),
        msgspec.msgpack.encode([1, "hello"]),
        msgspec.msgpack.encode({"v": "1", "op": "hello", "desktop": "d", "name": "n"}),
    ],
)
def test_malformed_headers_raise_protocol_error(header: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        p.decode([header])


def test_empty_and_oversized_messages_are_refused() -> None:
    with pytest.raises(p.ProtocolError, match="empty"):
        p.decode([])
    with pytest.raises(p.ProtocolError, match="header"):
        p.decode([b"\x00" * (p.MAX_HEADER_BYTES + 1)])
    header = p.encode(p.Result(job="j", seconds=1, worker="w", ext=".png"), b"x")[0]
    with pytest.raises(p.ProtocolError, match="exceeds 100"):
        p.decode([header, b"x" * 101], max_frame_bytes=100)
    with pytest.raises(p.ProtocolError, match="buffer"):
        p.decode([header, 12345])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=0, max_size=4))
def test_fuzzed_frames_only_ever_raise_protocol_error(frames: list[bytes]) -> None:
    try:
        msg, payload = p.decode(frames)
    except p.ProtocolError:
        return
    assert len(payload) == p.payload_count(msg)


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from(["hello", "ready", "heartbeat", "job", "result", "failed", "refuse", "x"]),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "job",
                "kind",
                "settings",
                "reason",
                "metrics",
                "info",
                "slots",
                "seconds",
                "shape",
                "v",
            ]
        ),
        _values,
        max_size=6,
    ),
    extra=st.integers(min_value=0, max_value=3),
)
def test_fuzzed_structured_headers_only_ever_raise_protocol_error(
    op: str, fields: dict[str, object], extra: int
) -> None:
    header = msgspec.msgpack.encode({"v": 1, "op": op, **fields})
    try:
        msg, payload = p.decode([header] + [b"p"] * extra)
    except p.ProtocolError:
        return
    assert msg.v == 1 and len(payload) == extra == p.payload_count(msg)


def test_a_payload_over_one_frame_goes_in_slices_and_comes_back_whole() -> None:
    big = bytes(range(256)) * (p.FRAME_BYTES // 256 * 2 + 7)  # 2 frames and a bit
    small = b"mask"
    job = p.Job(job="j", kind="file", settings={}, image_name="a", mask_name="b")
    frames = p.encode(job, big, small)
    assert len(frames) == 1 + 3 + 1
    assert all(len(f) <= p.FRAME_BYTES for f in frames[1:])
    msg, payload = p.decode([bytes(f) for f in frames])
    assert isinstance(msg, p.Job) and msg.parts == [3, 1]
    assert bytes(payload[0]) == big and bytes(payload[1]) == small
    # Forwarded as decoded (an agent passing a job to its worker): the split is redone.
    again = p.encode(msg, payload[0][:10], payload[1])
    resent, _ = p.decode([bytes(f) for f in again])
    assert len(again) == 3 and resent.parts == []


def test_bad_splits_and_oversized_totals_are_protocol_errors() -> None:
    job = p.Job(job="j", kind="file", settings={}, image_name="a", mask_name="b")
    header = bytes(p.encode(msgspec.structs.replace(job, parts=[2, 1]), b"x", b"y")[0])
    assert msgspec.msgpack.decode(header)["parts"] == []  # encode recomputes the split
    for parts, frames in (([2, 1], 2), ([0, 2], 2), ([1], 1), ([1, 1, 1], 3)):
        lying = msgspec.msgpack.encode({**msgspec.msgpack.decode(header), "parts": parts})
        with pytest.raises(p.ProtocolError, match="payload frames"):
            p.decode([lying, *([b"x"] * frames)])
    with pytest.raises(p.ProtocolError, match="payload of 20 bytes exceeds 10"):
        p.decode(p.encode(job, b"x" * 10, b"y" * 10), max_payload_bytes=10)
