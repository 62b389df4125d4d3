"""What the scheduler keeps of each batch and edit, and the file side of a job."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lama_desktop.cluster.events import JobState
from lama_desktop.cluster.records import JobRecord
from lama_desktop.engine.hd import Box, HDConfig, estimate_size
from lama_desktop.engine.imageio import write_atomic
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import JobOutcome, PlannedJob
from lama_desktop.engine.windows import edit_windows, pack, paste

_STATUS = {
    JobState.DONE: "done",
    JobState.FAILED: "failed",
    JobState.POISON: "failed",
    JobState.CANCELLED: "cancelled",
    JobState.SKIPPED: "skipped",
}


@dataclass(frozen=True)
class InteractiveResult:
    """A cleaned edit: the RGB pixels, the node that did it and its seconds of work."""

    rgb: np.ndarray
    node: str
    seconds: float


@dataclass
class BatchEntry:
    """What the scheduler keeps of a batch: its wire settings, planned files and waiters."""

    settings: dict[str, Any]
    overwrite: bool
    jobs: dict[str, PlannedJob]  # compact: strings inside
    durable: bool
    created: float
    done: asyncio.Future[None] = field(default_factory=asyncio.Future)  # set when it ends


@dataclass
class EditEntry:
    """An interactive edit in flight: its arrays, what is sent, and the future its caller awaits.

    `payload` is the image and mask frames: the whole arrays, or only the `windows` that the
    crop strategy needs on a large photo (engine/windows.py).
    """

    rgb: np.ndarray
    mask: np.ndarray
    settings: dict[str, Any]
    windows: list[Box] | None = None
    payload: tuple[Any, ...] = ()  # set by edit_payload
    done: asyncio.Future[InteractiveResult] = field(default_factory=asyncio.Future)

    def payload_bytes(self) -> int:
        return sum(memoryview(part).nbytes for part in self.payload)

    def model_size(self) -> tuple[int, int]:
        """The largest (height, width) the model may be given: the largest window, or all."""
        if self.windows:
            return max(((b - t) * (r - l_), (b - t, r - l_)) for l_, t, r, b in self.windows)[1]
        h, w = self.mask.shape
        return h, w


def edit_payload(edit: EditEntry, hd: HDConfig) -> None:
    """Choose what an edit sends: only its windows when the crop strategy allows (I/O thread)."""
    edit.windows = edit_windows(edit.mask, hd)
    if edit.windows is None:
        edit.payload = (edit.rgb, edit.mask)
    else:
        edit.payload = (pack(edit.rgb, edit.windows), pack(edit.mask, edit.windows))


def edit_result(edit: EditEntry, data: Any) -> np.ndarray:
    """The whole photo after the edit, from the node's answer (I/O thread: a full-size copy)."""
    if edit.windows is not None:
        return paste(edit.rgb, data, edit.windows)
    h, w = edit.mask.shape
    rgb = np.frombuffer(data, np.uint8)
    if rgb.size != h * w * 3:
        raise ValueError(f"node sent {rgb.size} bytes, not {h}x{w}x3")
    return rgb.reshape(h, w, 3).copy()


def batch_outcome(job: JobRecord, planned: PlannedJob, node: str | None) -> JobOutcome:
    """A batch job as the batch CLI and the queue report it."""
    status = _STATUS.get(job.state, str(job.state))
    if job.state == JobState.FAILED and job.reason.endswith("already exists (not overwritten)"):
        status = "exists"
    output = planned.output if job.state == JobState.DONE else None
    return JobOutcome(planned.image, output, status, job.reason, job.seconds or 0.0, node)


def estimate_memory(
    settings: JobSettings, size: tuple[int, int] | None = None, mask: np.ndarray | None = None
) -> int:
    """Peak bytes a worker needs for one job: what the model sees under the HD strategy.

    With the `mask`, a crop job is sized by its largest crop box, not by the whole photo.
    """
    try:
        from lama_desktop.engine.base import get_model_class

        model = get_model_class(settings.model) if settings.model != "auto" else None
    except Exception:  # an unknown model is the node's to report; route on size alone
        model = None
    hd = settings.hd
    if size is None:
        # Batch jobs: a crop or resize keeps the model's input near these limits.
        side = hd.resize_limit if hd.strategy == "resize" else hd.crop_trigger_size
        if hd.strategy == "original":
            return 0  # unknown until decoded; the node's own check decides
        h = w = side
    elif mask is not None:
        h, w = estimate_size(size[0], size[1], hd, mask)
        if h * w == 0:
            return 0  # nothing to erase: the model never runs
    else:
        h, w = size
    if model is None:
        return 24 * h * w
    return int(model.memory_estimate(h, w))


@functools.lru_cache(maxsize=64)
def settings_dict(settings: JobSettings) -> dict[str, Any]:
    """The wire form of a settings value; cached, as every edit of a session shares a few."""
    return settings.to_dict()


def read_inputs(job: PlannedJob) -> tuple[bytes, bytes]:
    """The photo's and the mask's file bytes (runs in an executor thread)."""
    return job.image.read_bytes(), job.mask.read_bytes()


def write_output(path: Path, data: memoryview, overwrite: bool) -> None:
    """Write a result atomically (runs in an executor thread)."""
    write_atomic(path, bytes(data), overwrite=overwrite)
