"""Run `lama-desktop serve`: a scheduler, this machine's workers and nodes behind IOPaint's API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lama_desktop.cluster.batch_run import start_local_agent, use_node
from lama_desktop.cluster.keys import load_or_create_keypair
from lama_desktop.cluster.scheduler import Scheduler
from lama_desktop.cluster.serving import ApiService, ServeOptions
from lama_desktop.engine.base import EngineError, resolve_auto_model
from lama_desktop.engine.pipeline import JobSettings

if TYPE_CHECKING:
    from lama_desktop.cluster.agent import Agent

log = logging.getLogger(__name__)


async def serve(
    options: ServeOptions,
    local_workers: int | None = None,
    nodes: Sequence[str] = (),
    *,
    data_dir: Path | None = None,
    on_listening: Callable[[str], None] = lambda url: None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or `stop` is set); every request runs on the cluster."""
    from lama_desktop.config import app_dirs

    if local_workers == 0 and not nodes:
        raise EngineError("--local-workers 0 needs at least one --node")
    if options.model == "auto":
        model, warning = resolve_auto_model()
        if warning:
            log.warning("%s", warning)
        options = replace(options, model=model)
    data = Path(data_dir) if data_dir is not None else app_dirs().data
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    keypair = load_or_create_keypair(data / "desktop.key")
    scheduler = Scheduler(
        # As `batch`: requests are never journaled; only finding paired nodes (--node) reads
        # the journal, so serve alone never opens (or moves aside) the app's journal.
        journal=data / "journal.sqlite3" if nodes else None,
        keypair=keypair,
        name=f"{socket.gethostname()} (serve)",
    )
    service = ApiService(scheduler, options)  # refuses a public address without a token
    await scheduler.start(resume=False, connect_paired=False)
    agent: Agent | None = None
    try:
        if local_workers != 0:
            settings = JobSettings(model=options.model)
            agent = await start_local_agent(scheduler, keypair, data, local_workers, settings)
        for spec in nodes:
            await use_node(scheduler, spec)
        await service.start()
        on_listening(service.site.url)
        await stop.wait()
    finally:
        await service.stop()
        if agent is not None:
            await agent.stop(drain=False)
        await scheduler.stop()
