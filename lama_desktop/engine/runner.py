"""Run a batch plan in this process, one photo after another; a bad file never stops the batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from lama_desktop.engine.base import EngineError, InpaintModel
from lama_desktop.engine.imageio import read_bytes, write_atomic
from lama_desktop.engine.pipeline import JobSettings, process_bytes
from lama_desktop.engine.plan import BatchPlan, JobOutcome, PlannedJob

log = logging.getLogger(__name__)


def run_job(job: PlannedJob, settings: JobSettings, model: InpaintModel, overwrite: bool) -> None:
    """Read, clean and atomically write one job; raises on any problem with it."""
    if job.output.resolve() in {job.image.resolve(), job.mask.resolve()}:
        raise EngineError(f"{job.output}: refusing to write over an input file")
    image_bytes = read_bytes(job.image)
    mask_bytes = read_bytes(job.mask)
    data = process_bytes(image_bytes, str(job.image), mask_bytes, str(job.mask), settings, model)
    write_atomic(job.output, data, overwrite=overwrite)


def _reason(exc: Exception) -> str:
    """The message a user sees: our own errors speak for themselves, others get their type."""
    if isinstance(exc, EngineError | OSError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def run_plan_in_process(
    plan: BatchPlan,
    settings: JobSettings,
    model: InpaintModel,
    on_outcome: Callable[[JobOutcome], None],
    should_stop: Callable[[], bool],
) -> list[JobOutcome]:
    """Run every job of `plan` with `model`; report each outcome as it happens and return all.

    When `should_stop` turns true the remaining jobs are reported "cancelled". Ctrl-C
    (KeyboardInterrupt) propagates after the current write cleaned up its temporary file.
    """
    outcomes: list[JobOutcome] = []

    def report(outcome: JobOutcome) -> None:
        outcomes.append(outcome)
        on_outcome(outcome)

    for job in plan.jobs:
        if should_stop():
            report(JobOutcome(job.image, job.output, "cancelled", "batch stopped"))
            continue
        started = time.perf_counter()
        try:
            run_job(job, settings, model, plan.overwrite)
        except FileExistsError:
            # Appeared since planning (another run?): theirs is kept, as resume would.
            seconds = time.perf_counter() - started
            report(JobOutcome(job.image, job.output, "exists", "output already exists", seconds))
        except Exception as exc:  # one bad photo must not end the batch; the reason is kept
            log.debug("job %s failed", job.image, exc_info=True)
            seconds = time.perf_counter() - started
            report(JobOutcome(job.image, None, "failed", _reason(exc), seconds))
        else:
            seconds = time.perf_counter() - started
            report(JobOutcome(job.image, job.output, "done", "", seconds))
    return outcomes
