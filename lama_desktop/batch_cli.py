"""`lama-desktop batch`: clean a folder of photos with their masks, headless, resumable."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from lama_desktop.engine.base import EngineError, create_model, get_model_class, resolve_auto_model
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.imageio import DEFAULT_MAX_PIXELS
from lama_desktop.engine.outputs import remove_leftovers, unwritable_output
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import BatchPlan, JobOutcome, PlanError, plan_batch
from lama_desktop.engine.runner import run_plan_in_process

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

OnOutcome = Callable[[JobOutcome], None]
ShouldStop = Callable[[], bool]
# Runs the jobs of a plan and reports each outcome; in this process or through the cluster.
Executor = Callable[[BatchPlan, JobSettings, OnOutcome, ShouldStop], list[JobOutcome]]


class _UsageError(Exception):
    """Options that cannot be acted on (exit code 2)."""


def add_parser(subparsers: Any) -> None:
    """Add the `batch` command to a CLI's subparsers."""
    p = subparsers.add_parser(
        "batch",
        help="clean many photos with their masks, without the window",
        description=(
            "Erase the masked areas of every photo in IMAGES and save the results in OUT.\n"
            "Masks are matched by file name stem (photo.jpg <- photo.png); white (non-zero)\n"
            "means erase. Outputs that already exist are skipped, so a re-run resumes."
        ),
        epilog=(
            "example: lama-desktop batch photos/ --masks masks/ --out cleaned/ --json\n"
            "exit codes: 0 all done, 1 a photo failed (each is named with its reason),\n"
            "2 usage error, 130 stopped by Ctrl-C (no partial file is left)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", type=Path, metavar="IMAGES", help="a photo or a folder of photos")
    p.add_argument("--masks", type=Path, required=True, help="mask folder, or one mask for all")
    p.add_argument("--out", type=Path, required=True, help="folder for the results")
    p.add_argument("--model", default="auto", help="lama, opencv-ns, opencv-telea (default: auto)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument(
        "--hd-strategy", default="crop", choices=[s.value for s in HDStrategy],
        help="how large photos reach the model (default: crop, as IOPaint)",
    )  # fmt: skip
    p.add_argument("--recursive", action="store_true", help="include subfolders, keep structure")
    p.add_argument("--overwrite", action="store_true", help="redo photos whose output exists")
    p.add_argument("--format", choices=["png", "jpg", "jpeg", "webp"], help="output format")
    p.add_argument(
        "--quality",
        type=_quality,
        default=95,
        help="JPEG/WebP quality (default 95); a JPEG kept as JPEG keeps its own",
    )
    p.add_argument("--resize-mask", action="store_true", help="scale masks of another size")
    p.add_argument(
        "--max-pixels", type=_positive, default=DEFAULT_MAX_PIXELS,
        help=f"refuse photos larger than this (default {DEFAULT_MAX_PIXELS:,})",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    cluster = p.add_argument_group("cluster (spread the batch over worker processes and nodes)")
    cluster.add_argument(
        "--local-workers", type=_count, metavar="N",
        help="worker processes on this machine (default: sized to the cores; 0: only the nodes)",
    )  # fmt: skip
    cluster.add_argument(
        "--in-process", action="store_true",
        help="skip the scheduler: run every photo in this process, one after another",
    )  # fmt: skip
    cluster.add_argument(
        "--node", action="append", default=[], metavar="LINK", help="a node to use (repeatable)"
    )
    cluster.add_argument(
        "--pair", action="append", default=[], metavar="LINK",
        help="pair with a new node using its pairing link, then use it (repeatable)",
    )  # fmt: skip


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 1..100, not {value}")
    return value


def run_in_process(
    plan: BatchPlan, settings: JobSettings, on_outcome: OnOutcome, should_stop: ShouldStop
) -> list[JobOutcome]:
    """The default executor: load the model here, then run the jobs one after another."""
    model = create_model(settings.model, device=settings.device)
    try:
        return run_plan_in_process(plan, settings, model, on_outcome, should_stop)
    finally:
        model.close()


def _cluster_executor(args: argparse.Namespace) -> Executor:
    try:
        # Imported by name: the cluster package is optional for a plain in-process batch.
        batch_run = importlib.import_module("lama_desktop.cluster.batch_run")
    except ImportError as exc:
        raise _UsageError(f"--local-workers/--node/--pair need the cluster ({exc})") from None
    if args.local_workers == 0 and not args.node and not args.pair:
        raise _UsageError("--local-workers 0 needs at least one --node or --pair")
    keys = importlib.import_module("lama_desktop.cluster.keys")
    for link in [*args.pair, *(n for n in args.node if n.startswith("lama://"))]:
        try:
            keys.PairingLink.parse(link)
        except ValueError as exc:  # said before any worker starts
            raise _UsageError(str(exc)) from None
    refused = importlib.import_module("lama_desktop.cluster.scheduler").PairingFailed

    def execute(
        plan: BatchPlan, settings: JobSettings, on_outcome: OnOutcome, should_stop: ShouldStop
    ) -> list[JobOutcome]:
        try:
            outcomes: list[JobOutcome] = batch_run.run_plan(
                plan, settings, args.local_workers, args.node, on_outcome, should_stop,
                pair=args.pair,
            )  # fmt: skip
        except refused as exc:  # a used, expired or wrong code: the user needs a new link
            log.debug("pairing failed", exc_info=True)
            raise _UsageError(f"pairing failed: {exc}") from None
        return outcomes

    return execute


def choose_executor(args: argparse.Namespace) -> Executor:
    """Through the embedded scheduler and its workers, unless --in-process asks otherwise."""
    if args.in_process:
        if args.local_workers is not None or args.node or args.pair:
            raise _UsageError("--in-process cannot be combined with --local-workers/--node/--pair")
        return run_in_process
    return _cluster_executor(args)


def _settings(args: argparse.Namespace, err: TextIO) -> JobSettings:
    model = args.model
    if model == "auto":
        model, warning = resolve_auto_model()
        if warning:
            print(f"warning: {warning}", file=err)
    try:
        model = get_model_class(model).name
    except EngineError as exc:
        raise _UsageError(str(exc)) from None
    fmt = "jpg" if args.format == "jpeg" else args.format
    return JobSettings(
        model=model,
        device=args.device,
        hd=HDConfig(strategy=HDStrategy(args.hd_strategy)),
        output_format=fmt,
        quality=args.quality,
        resize_mask=args.resize_mask,
        max_pixels=args.max_pixels,
    )


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so both stop cleanly (main thread only)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace, executor: Executor | None = None) -> int:
    """Carry out a parsed `batch` command; returns the process exit code."""
    out, err = sys.stdout, sys.stderr
    try:
        settings = _settings(args, err)
        plan = plan_batch(
            args.images,
            args.masks,
            args.out,
            recursive=args.recursive,
            overwrite=args.overwrite,
            output_format=settings.output_format,
        )
        execute = executor or choose_executor(args)
        problem = unwritable_output(plan)
        if problem is not None:  # one reason, before any model loads or worker starts
            raise _UsageError(problem)
    except (_UsageError, PlanError) as exc:
        print(f"lama-desktop batch: {exc}", file=err)
        return EXIT_USAGE
    removed = remove_leftovers(plan)
    if removed:
        print(f"removed {len(removed)} temporary file(s) left by an interrupted run", file=err)
    report = _BatchReport(plan, args.out, err, as_json=args.json)
    started = time.perf_counter()
    interrupted = False
    with _sigterm_as_interrupt():
        try:
            if plan.jobs:
                execute(plan, settings, report.add, lambda: False)
        except KeyboardInterrupt:
            interrupted = True
        except _UsageError as exc:  # e.g. a refused pairing link: nothing ran
            print(f"lama-desktop batch: {exc}", file=err)
            return EXIT_USAGE
        except EngineError as exc:  # the model could not be loaded: nothing ran
            report.fail_rest(str(exc))
    report.cancel_rest()
    report.finish(out, time.perf_counter() - started, settings, interrupted)
    if interrupted:
        return EXIT_INTERRUPTED
    # A job an executor never reported ended "cancelled": that is not a success either.
    return EXIT_FAILED if report.count("failed") or report.count("cancelled") else EXIT_OK


class _BatchReport:
    """Collects outcomes and shows progress: a tqdm bar on a terminal, plain lines otherwise."""

    def __init__(self, plan: BatchPlan, out_dir: Path, stream: TextIO, as_json: bool) -> None:
        self.outcomes: list[JobOutcome] = []
        self._pending = {job.image: job for job in plan.jobs}
        self._total = len(plan.jobs)
        self._stream = stream
        self._out_dir = out_dir
        self._as_json = as_json
        self._started = time.perf_counter()
        self._started_ns = time.time_ns()
        self._overwrite = plan.overwrite
        self._lock = threading.Lock()  # a cluster executor may report from its own thread
        for skip in plan.skipped:
            self._record(JobOutcome(skip.image, None, "skipped", skip.reason))
            print(f"skipped  {skip.image}: {skip.reason}", file=stream)
        for job in plan.already_done:
            self._record(JobOutcome(job.image, job.output, "exists", "output already exists"))
        if plan.already_done:
            print(
                f"{len(plan.already_done)} photo(s) already done in {out_dir} "
                "(kept; --overwrite redoes them)",
                file=stream,
            )
        self._bar: Any = None
        if stream.isatty() and self._total:
            from tqdm import tqdm

            self._bar = tqdm(total=self._total, unit="photo", file=stream, dynamic_ncols=True)

    def _record(self, outcome: JobOutcome) -> None:
        self.outcomes.append(outcome)

    def add(self, outcome: JobOutcome) -> None:
        """Take one job's outcome from the executor."""
        with self._lock:
            self._pending.pop(outcome.image, None)
            self._record(outcome)
            self._show(outcome)

    def _show(self, outcome: JobOutcome) -> None:
        line = f"{outcome.status:<9}{outcome.image}"
        if outcome.status == "done":
            line += f" -> {outcome.output} ({outcome.seconds:.1f} s)"
        elif outcome.reason:
            line += f": {_why(outcome)}"
        if self._bar is not None:
            if outcome.status != "done":
                self._bar.write(line, file=self._stream)
            self._bar.update(1)
            return
        finished = self._total - len(self._pending)
        elapsed = time.perf_counter() - self._started
        eta = elapsed / finished * (self._total - finished) if finished else 0.0
        print(f"[{finished}/{self._total}] {line}  ETA {eta:.0f} s", file=self._stream, flush=True)

    def fail_rest(self, reason: str) -> None:
        """Every job not yet reported failed for one shared reason (e.g. the model won't load)."""
        for job in list(self._pending.values()):
            self.add(JobOutcome(job.image, None, "failed", reason))

    def cancel_rest(self) -> None:
        """Every job not yet reported was stopped, unless its output landed just before."""
        for job in list(self._pending.values()):
            if self._written_by_us(job.output):
                # Ctrl-C between the rename and the report: the result is whole, so say so.
                self.add(JobOutcome(job.image, job.output, "done", "finished as the batch stopped"))
            else:
                self.add(JobOutcome(job.image, None, "cancelled", "stopped before it finished"))

    def _written_by_us(self, output: Path) -> bool:
        try:
            modified = output.stat().st_mtime_ns
        except OSError:
            return False
        # Planned jobs had no output then, unless --overwrite: then only a newer file is ours.
        return not self._overwrite or modified >= self._started_ns

    def count(self, status: str) -> int:
        """How many photos ended with `status`."""
        return sum(o.status == status for o in self.outcomes)

    def finish(self, out: TextIO, seconds: float, settings: JobSettings, interrupted: bool) -> None:
        """Close the bar and print the summary (JSON with --json)."""
        if self._bar is not None:
            self._bar.close()
        if self._as_json:
            print(summary_json(self.outcomes, seconds, settings), file=out)
            return
        counts = ", ".join(
            f"{self.count(s)} {s}" for s in ("done", "failed", "skipped", "exists", "cancelled")
        )
        head = "Stopped" if interrupted else "Finished"
        print(f"{head} in {seconds:.1f} s with {settings.model}: {counts}.", file=out)
        for status in ("failed", "skipped"):
            listed = [o for o in self.outcomes if o.status == status]
            if listed:
                print(f"{status.capitalize()}:", file=out)
                for o in listed:
                    print(f"  {o.image}: {_why(o)}", file=out)
        if self.count("done") or self.count("exists"):
            print(f"Results are in {self._out_dir}", file=out)


def _why(outcome: JobOutcome) -> str:
    """The reason without the photo's path in front when the line already starts with it."""
    prefix = f"{outcome.image}: "
    return outcome.reason.removeprefix(prefix)


def summary_json(outcomes: list[JobOutcome], seconds: float, settings: JobSettings) -> str:
    """The --json summary: counts, settings, and every file's status, reason and seconds."""
    statuses = ("done", "failed", "skipped", "exists", "cancelled")
    counts = {s: sum(o.status == s for o in outcomes) for s in statuses}
    return json.dumps(
        {
            "counts": {**counts, "total": len(outcomes)},
            "seconds": round(seconds, 3),
            "settings": settings.to_dict(),
            "files": [
                {
                    "image": str(o.image),
                    "output": None if o.output is None else str(o.output),
                    "status": o.status,
                    "reason": o.reason,
                    "seconds": round(o.seconds, 3),
                    "node": o.node,
                }
                for o in outcomes
            ],
        },
        indent=2,
        ensure_ascii=False,
    )
