"""Run a BatchPlan through an embedded scheduler, a local agent and paired nodes (`batch` CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lama_desktop.cluster.events import Event, JobChanged, NodeState
from lama_desktop.cluster.journal import Journal, StoredNode
from lama_desktop.cluster.keys import KeyPair, PairingLink, load_or_create_keypair
from lama_desktop.cluster.records import FINAL
from lama_desktop.cluster.scheduler import Scheduler
from lama_desktop.cluster.stop_signals import on_stop_signals
from lama_desktop.engine.base import EngineError, get_spec, resolve_auto_model
from lama_desktop.engine.outputs import remove_leftovers, unwritable_output
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import BatchPlan, JobOutcome

if TYPE_CHECKING:
    from lama_desktop.cluster.agent import Agent

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
POLL_S = 0.1
PROGRESS_EVERY_S = 10.0  # a per-node throughput line this often while the batch runs
# An agent's READY lists the models found on its disk; its workers add any engine a plugin
# registers once they are up. Wait this long after every node is ready before saying that no
# node has the model.
MODELS_SETTLE_S = 10.0


@dataclass
class NodeTally:
    """Photos one node finished in this run, for the per-node throughput lines."""

    name: str
    started: float  # when the batch was submitted (time.monotonic)
    done: int = 0
    last: float = 0.0

    def rate(self) -> float:
        """Photos per second since the batch was submitted."""
        span = self.last - self.started
        return self.done / span if span > 0 else 0.0


def run_plan(
    plan: BatchPlan,
    settings: JobSettings,
    local_workers: int | None = None,
    nodes: Sequence[str] = (),
    on_outcome: Callable[[JobOutcome], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    pair: Sequence[str] = (),
    journal: Path | None = None,
    data_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[JobOutcome]:
    """Run every job of `plan` on local worker processes and on the given nodes.

    `local_workers`: None = one CPU worker sized to the cores (or one per GPU), 0 = none (then
    `nodes` or `pair` must name at least one node). `nodes`: pairing links or addresses of
    agents paired before; a link whose agent is not yet paired is paired with its code.
    `pair`: links to pair first. Outcomes are reported as they happen and returned in plan
    order. Ctrl-C cancels the batch (no partial output) and propagates.
    """
    if local_workers == 0 and not nodes and not pair:
        raise EngineError("--local-workers 0 needs at least one --node or --pair")
    problem = unwritable_output(plan)
    if problem is not None:  # found before any worker starts, once for the whole batch
        raise EngineError(problem)
    remove_leftovers(plan)
    if settings.model == "auto":  # routing needs a real model name (the CLI resolves it too)
        settings = replace(settings, model=resolve_auto_model()[0])
    try:
        return asyncio.run(
            _run(
                plan, settings, local_workers, list(nodes), list(pair),
                on_outcome or (lambda outcome: None), should_stop or (lambda: False),
                journal, data_dir, progress or _print_progress,
            )
        )  # fmt: skip
    except asyncio.CancelledError:
        # SIGTERM cancelled the run (see _cancel_on_sigterm); the batch was cancelled and the
        # workers stopped on the way out. Report it the way asyncio.run reports Ctrl-C.
        raise KeyboardInterrupt from None


def _cancel_on_sigterm() -> None:
    """Make SIGTERM cancel the running batch like Ctrl-C does, with the same clean-up.

    A Python-level handler that raises inside the selector would skip the `finally` that stops
    the agent and the scheduler, and leave worker processes and ZeroMQ sockets behind.
    """
    task = asyncio.current_task()
    if task is None:
        return
    on_stop_signals(asyncio.get_running_loop(), task.cancel, [signal.SIGTERM])


def _print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _run(
    plan: BatchPlan,
    settings: JobSettings,
    local_workers: int | None,
    nodes: list[str],
    pair: list[str],
    on_outcome: Callable[[JobOutcome], None],
    should_stop: Callable[[], bool],
    journal: Path | None,
    data_dir: Path | None,
    progress: Callable[[str], None],
) -> list[JobOutcome]:
    from lama_desktop.config import app_dirs

    _cancel_on_sigterm()

    dirs = app_dirs()
    data = Path(data_dir) if data_dir is not None else dirs.data
    keypair = load_or_create_keypair(data / "desktop.key")
    scheduler = Scheduler(
        # The batch itself is not journaled: only pairing (--pair) and finding paired nodes
        # (--node) need the journal, so a damaged or locked one never stops a local batch.
        journal=(journal or data / "journal.sqlite3") if nodes or pair else None,
        keypair=keypair,
        name=f"{socket.gethostname()} (batch)",
    )
    await scheduler.start(resume=False, connect_paired=False)
    agent: Agent | None = None
    batch_id: str | None = None
    tallies: dict[str, NodeTally] = {}
    try:
        if local_workers != 0:
            agent = await start_local_agent(scheduler, keypair, data, local_workers, settings)
        for link in pair:
            await scheduler.pair(link)
        for spec in nodes:
            await use_node(scheduler, spec)
        await _wait_ready(scheduler, settings.model)

        def on_event(event: Event) -> None:
            if not isinstance(event, JobChanged) or event.job.batch_id != batch_id:
                return
            if event.job.state not in FINAL:
                return
            outcome = scheduler.outcome(event.job.job_id)
            if outcome.status == "done" and outcome.node:
                tally = tallies.setdefault(outcome.node, NodeTally(outcome.node, submitted))
                tally.last = time.monotonic()
                tally.done += 1
            on_outcome(outcome)

        unsubscribe = scheduler.events.subscribe(on_event)
        submitted = time.monotonic()
        batch_id = scheduler.submit_batch(plan, settings, "batch", durable=False)
        waiter = asyncio.ensure_future(scheduler.wait_batch(batch_id))
        next_report = time.monotonic() + PROGRESS_EVERY_S
        while not waiter.done():
            if should_stop():
                scheduler.cancel_batch(batch_id)
            await asyncio.wait([waiter], timeout=POLL_S)
            if time.monotonic() >= next_report and tallies:
                next_report += PROGRESS_EVERY_S
                progress("throughput: " + ", ".join(
                    f"{t.name} {t.rate():.2f} photo/s ({t.done})" for t in tallies.values()
                ))  # fmt: skip
        outcomes = waiter.result()
        unsubscribe()
        for tally in sorted(tallies.values(), key=lambda t: -t.done):
            progress(f"node {tally.name}: {tally.done} photo(s), {tally.rate():.2f} photo/s")
        return outcomes
    finally:
        # Ctrl-C or an error: running jobs are cancelled (their workers stopped); writes in
        # flight finish inside scheduler.stop(), so no partial output is left behind.
        if batch_id is not None:
            with contextlib.suppress(KeyError):
                scheduler.cancel_batch(batch_id)
        if agent is not None:
            await agent.stop(drain=False)
        await scheduler.stop()


def local_worker_plan(
    requested: int | None, settings: JobSettings
) -> tuple[int | Literal["auto"], str]:
    """How many local workers, on which device, when the user did not say.

    The OpenCV engines are single-threaded and CPU-only: one worker per core keeps every core
    busy. Torch models get the agent's "auto" (one per GPU, else one CPU worker whose threads
    span the cores), since two CPU workers would only fight over the same cores.
    """
    if requested is not None:
        return requested, settings.device
    if get_spec(settings.model).devices == ("cpu",):
        return os.cpu_count() or 1, "cpu"
    return "auto", settings.device


async def start_local_agent(
    scheduler: Scheduler,
    keypair: KeyPair,
    data: Path,
    requested: int | None,
    settings: JobSettings,
) -> Agent:
    """This machine's workers as a node of `scheduler`: an agent on loopback that lets the
    desktop's key in. Stopped again if it cannot be attached."""
    from lama_desktop.cluster.agent import Agent  # the agent pulls in hardware probing

    workers, device = local_worker_plan(requested, settings)
    agent = Agent(
        "tcp://127.0.0.1:0",
        data_dir=data / "local-agent",
        workers=workers,
        device=device,
        name=f"{socket.gethostname()} (local)",
        preauthorized=[keypair.public],
        log_file=False,
        worker_log_level="WARNING",  # the command's own lines are its report
    )
    try:
        await agent.start()
        await scheduler.add_node(agent.endpoint, agent.public_key.decode(), agent.name, True)
    except BaseException:
        await agent.stop(drain=False)
        raise
    return agent


async def use_node(scheduler: Scheduler, spec: str) -> None:
    """A pairing link (paired now if needed) or the address of an agent paired before."""
    assert scheduler.journal is not None
    known = scheduler.journal.nodes()
    if spec.lower().startswith(("http://", "https://")):  # an IOPaint-compatible endpoint
        from lama_desktop.cluster.http_address import HttpNodeSpec

        http = HttpNodeSpec.parse(spec)
        seen = next((n for n in known if n.address == http.address), None)
        token = http.token or (seen.server_key if seen else "")
        await scheduler.add_node(http.address, token, seen.name if seen else "",
                                 node_id=seen.node_id if seen else None)  # fmt: skip
        return
    if spec.startswith("lama://"):
        link = PairingLink.parse(spec)
        for node in known:
            if node.address == link.address and node.server_key == link.server_key:
                await scheduler.add_node(
                    node.address, node.server_key, node.name, node_id=node.node_id
                )
                return
        await scheduler.pair(link)
        return
    address = spec if "://" in spec else f"tcp://{spec}"
    match = _find(known, address)
    if match is None:
        raise EngineError(f"{spec} is not a paired node: pair it first with --pair LINK")
    await scheduler.add_node(match.address, match.server_key, match.name, node_id=match.node_id)


def _find(known: list[StoredNode], address: str) -> StoredNode | None:
    return next((n for n in known if n.address == address or n.name == address), None)


async def _wait_ready(scheduler: Scheduler, model: str) -> None:
    """Wait until a node that has `model` can take jobs.

    The desktop app waits for such a node to come (a model may be downloaded meanwhile); a
    command stops with the reason instead: every node ready and none with the model, or a
    node that refuses us, is an error worth stopping for.
    """
    deadline = time.monotonic() + READY_TIMEOUT_S
    all_ready_since: float | None = None
    while time.monotonic() < deadline:
        nodes = scheduler.snapshot().nodes
        working = [n for n in nodes if n.state in (NodeState.IDLE, NodeState.BUSY)]
        if any(model in n.models for n in working):
            return
        if not working or not all(peer.ready for peer in scheduler.peers.values()):
            all_ready_since = None
        elif all_ready_since is None:
            all_ready_since = time.monotonic()
        elif time.monotonic() - all_ready_since > MODELS_SETTLE_S:
            have = "; ".join(f"{n.name}: {', '.join(n.models) or 'no model'}" for n in working)
            raise EngineError(
                f"no node has the model {model!r} ({have}). "
                f"Get it with `lama-desktop models download {model}` on the machine that "
                "should run it, or choose another --model."
            )
        await asyncio.sleep(POLL_S)
    reasons = [f"{n.name}: {n.reason or n.state}" for n in scheduler.snapshot().nodes]
    raise EngineError(f"no node became ready within {READY_TIMEOUT_S:.0f} s ({'; '.join(reasons)})")


def paired_nodes(data_dir: Path) -> list[StoredNode]:
    """The agents this desktop has paired with (for `--node NAME` and listings)."""
    journal = Journal(data_dir / "journal.sqlite3")
    try:
        return journal.nodes()
    finally:
        journal.close()
