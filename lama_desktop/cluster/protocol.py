"""Wire messages between scheduler, agents and workers: msgspec structs as msgpack + raw frames."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

PROTOCOL_VERSION = 1
# Total payload limit of one message (a 150 MP photo's crop fits; a whole one may not).
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# The largest frame anyone sends: a larger payload travels as several frames of this size. So
# the agent's public socket can hold zmq.MAXMSGSIZE at this size, and a stranger's unfinished
# Curve handshake (whose frames libzmq buffers before ZAP decides) can claim no more than this.
FRAME_BYTES = 4 * 1024 * 1024
# What Curve adds to a frame on the wire (MESSAGE command, nonce, MAC): MAXMSGSIZE counts it.
CURVE_FRAME_OVERHEAD = 64
# A header is a small msgpack map (settings included); anything larger is garbage or an attack.
MAX_HEADER_BYTES = 1024 * 1024
# pyzmq copies frames below zmq.COPY_THRESHOLD (64 kB) even with copy=False, so senders can
# always use send_multipart(frames, copy=False): small frames are copied, large ones are not.
ZERO_COPY_BYTES = 64 * 1024

Buffer = bytes | bytearray | memoryview


class ProtocolError(Exception):
    """A message that cannot be understood: malformed, unknown op, wrong frames, too large."""


class VersionMismatch(ProtocolError):
    """The peer speaks another protocol version; reply with `refusal_for(error)`."""

    def __init__(self, peer_version: int) -> None:
        super().__init__(
            f"peer speaks protocol version {peer_version}, this side speaks {PROTOCOL_VERSION}"
        )
        self.peer_version = peer_version


class GpuInfo(msgspec.Struct):
    name: str
    vram_total: int
    index: int


class NodeInfo(msgspec.Struct):
    hostname: str
    os: str
    cpu_model: str
    cores: int
    ram_total: int
    gpus: list[GpuInfo] = []
    engines: dict[str, str] = {}
    # How a pooled node's workers are spread, shown as its device ("Ray: 4 actors on 2 nodes");
    # "" for an agent's own worker processes. Older peers ignore or default it.
    pool: str = ""


class GpuMetrics(msgspec.Struct):
    index: int
    util: float | None = None
    vram_used: int | None = None
    vram_free: int | None = None
    temp: float | None = None


class TorchDevice(msgspec.Struct):
    """A device torch sees in a worker: "cpu", "mps" or "cuda:N" (N as the worker numbers it)."""

    name: str
    title: str = ""
    uuid: str = ""  # "GPU-..." as NVML writes it, so the agent can tell which GPU it is
    memory: int = 0


class Metrics(msgspec.Struct):
    cpu_percent: float
    load1: float
    ram_used: int
    ram_total: int
    gpus: list[GpuMetrics] = []
    busy_slots: int = 0
    jobs_done: int = 0


class _Message(msgspec.Struct, tag_field="op", kw_only=True):
    v: int = PROTOCOL_VERSION
    # Frames of each payload when one was split at FRAME_BYTES; empty: one frame each.
    parts: list[int] = []


class Hello(_Message, tag="hello"):
    """Scheduler -> agent, first word on a connection; retried every heartbeat until READY."""

    desktop: str
    name: str


class Ready(_Message, tag="ready"):
    """Agent -> scheduler (and worker -> agent with slots=1); resent when slots/models change."""

    node: str
    info: NodeInfo
    slots: int
    models: list[str]
    version: str
    # Added after version 1 shipped: a peer that leaves it out still decodes.
    devices: list[TorchDevice] = []


class Heartbeat(_Message, tag="heartbeat"):
    """Both ways every heartbeat interval; any message also counts as a heartbeat."""

    metrics: Metrics | None = None


class Disconnect(_Message, tag="disconnect"):
    """Both ways: the sender is leaving on purpose."""

    reason: str


class Refuse(_Message, tag="refuse"):
    """Reply to a wrong version, an unpaired peer or a bad pairing code. Layout frozen forever."""

    reason: str
    peer_version: int = PROTOCOL_VERSION


class Pair(_Message, tag="pair"):
    """Scheduler -> agent over a connection made with the code's pairing key: authorise my key."""

    code: str
    desktop_name: str
    desktop_key: str = ""  # the desktop's own Curve public key (z85), to put in authorized_keys


class Paired(_Message, tag="paired"):
    """Agent -> scheduler: the desktop key is now in the agent's authorized_keys."""

    node: str


class Job(_Message, tag="job"):
    """Scheduler -> agent -> worker, followed by two payload frames: [image, mask]."""

    job: str
    kind: Literal["file", "array"]
    settings: dict[str, Any]
    image_name: str
    mask_name: str
    shape: list[int] | None = None
    attempt: int = 1


class Cancel(_Message, tag="cancel"):
    """Scheduler -> agent: stop this job (a running one is interrupted by killing its worker)."""

    job: str


class Result(_Message, tag="result"):
    """Worker -> agent -> scheduler, followed by one payload frame: the encoded output image."""

    job: str
    seconds: float
    worker: str
    ext: str
    shape: list[int] | None = None


class Failed(_Message, tag="failed"):
    """Worker/agent -> scheduler: the job did not produce an output, and why."""

    job: str
    reason: str
    crashed: bool = False
    cancelled: bool = False
    missing_model: bool = False
    # The node did not run it (full, stopping): not the job's fault, it goes elsewhere.
    declined: bool = False
    # The input itself is bad (corrupt photo, mask of another size): retrying cannot help.
    permanent: bool = False


Message = (
    Hello | Ready | Heartbeat | Disconnect | Refuse | Pair | Paired | Job | Cancel | Result | Failed
)

PAYLOAD_FRAMES: dict[type[_Message], int] = {Job: 2, Result: 1}


class _Envelope(msgspec.Struct):
    """The part of every header that never changes across versions."""

    v: int
    op: str


_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(_Envelope)
_message_decoder = msgspec.msgpack.Decoder(Message)
_refuse_decoder = msgspec.msgpack.Decoder(Refuse)


def payload_count(msg: _Message) -> int:
    """How many raw payload frames follow this message's header."""
    return PAYLOAD_FRAMES.get(type(msg), 0)


def encode(msg: _Message, *payload: Buffer) -> list[Buffer]:
    """Frames for `msg`: [header, *payload]; payload buffers are passed through without copying.

    A payload over FRAME_BYTES goes as consecutive slices of it (views, not copies), and the
    header's `parts` says how many frames each payload took.
    """
    expected = payload_count(msg)
    if len(payload) != expected:
        raise ProtocolError(
            f"{type(msg).__name__} takes {expected} payload frames, not {len(payload)}"
        )
    views = [part if isinstance(part, bytes) else memoryview(part).cast("B") for part in payload]
    sizes = [len(view) for view in views]
    parts = [max(1, -(-size // FRAME_BYTES)) for size in sizes] if sizes else []
    wanted = parts if any(n > 1 for n in parts) else []
    if msg.parts != wanted:  # a forwarded message carries its sender's split
        msg = msgspec.structs.replace(msg, parts=wanted)
    frames: list[Buffer] = [_encoder.encode(msg)]
    for view, count in zip(views, parts, strict=True):
        if count == 1:
            frames.append(view)
            continue
        whole = memoryview(view)
        frames.extend(whole[i * FRAME_BYTES : (i + 1) * FRAME_BYTES] for i in range(count))
    return frames


def decode(
    frames: Sequence[Any],
    *,
    max_frame_bytes: int = FRAME_BYTES,
    max_payload_bytes: int = MAX_MESSAGE_BYTES,
) -> tuple[Message, list[memoryview]]:
    """Parse [header, *payload] (bytes, memoryviews or zmq.Frames) into a message and payload.

    A payload split over several frames (see `encode`) comes back joined, as one buffer.

    Raises VersionMismatch for another protocol version (except REFUSE, whose layout is frozen so
    a refusal is always readable) and ProtocolError for anything malformed; nothing else.
    """
    if not frames:
        raise ProtocolError("empty message")
    try:
        views = [memoryview(frame).cast("B") for frame in frames]
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"frame is not a byte buffer: {exc}") from None
    header = views[0]
    if header.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {header.nbytes} bytes exceeds {MAX_HEADER_BYTES}")
    for view in views[1:]:
        if view.nbytes > max_frame_bytes:
            raise ProtocolError(f"frame of {view.nbytes} bytes exceeds {max_frame_bytes}")
    try:
        envelope = _envelope_decoder.decode(header)
        if envelope.op == "refuse":
            msg: Message = _refuse_decoder.decode(header)
        elif envelope.v != PROTOCOL_VERSION:
            raise VersionMismatch(envelope.v)
        else:
            msg = _message_decoder.decode(header)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed header: {exc}") from None
    expected = payload_count(msg)
    parts = msg.parts or [1] * expected
    if len(parts) != expected or min(parts, default=1) < 1 or sum(parts) != len(views) - 1:
        raise ProtocolError(
            f"{envelope.op} carries {len(views) - 1} payload frames, expected {expected}"
            + (f" in {parts} parts" if msg.parts else "")
        )
    total = sum(view.nbytes for view in views[1:])
    if total > max_payload_bytes:
        raise ProtocolError(f"payload of {total} bytes exceeds {max_payload_bytes}")
    payload: list[memoryview] = []
    start = 1
    for count in parts:
        chunk = views[start : start + count]
        payload.append(chunk[0] if count == 1 else memoryview(b"".join(chunk)))
        start += count
    return msg, payload


def refusal_for(error: VersionMismatch) -> Refuse:
    """The REFUSE to send back to a peer of another version, naming both versions."""
    return Refuse(
        reason=f"protocol version mismatch: you speak {error.peer_version}, "
        f"this side speaks {PROTOCOL_VERSION}",
        peer_version=error.peer_version,
    )
