"""Hosting the IOPaint API and /metrics on the running event loop (CLI, app and agent alike)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from lama_desktop.cluster.iopaint_api import IOPaintApi
from lama_desktop.cluster.metrics import CONTENT_TYPE, SchedulerMetrics, render
from lama_desktop.engine.base import resolve_auto_model

log = logging.getLogger(__name__)

TOKEN_ENV = "LAMA_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token: the API runs jobs on every node."""
    if not is_loopback(host) and not token:
        raise ValueError(
            f"listening on {host} lets other machines use this API: give a token with "
            f"--token TOKEN (or {TOKEN_ENV}); clients then send `Authorization: Bearer TOKEN`"
        )


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """HOST:PORT, :PORT or PORT (host 127.0.0.1); raises ValueError with the expected form."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return host, int(port)


class HttpSite:
    """One aiohttp application listening on HOST:PORT, on the loop that is running now."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._runner: web.AppRunner | None = None
        self.host = ""
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (the one the system chose, for port 0)."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server  # aiohttp exposes the bound sockets only here
        sockets = getattr(server, "sockets", None) or []
        self.host = host
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        return self.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


def metrics_route(registry: CollectorRegistry) -> web.RouteDef:
    """GET /metrics in the Prometheus text format."""

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=render(registry), headers={"Content-Type": CONTENT_TYPE})

    return web.get("/metrics", handler)


def metrics_app(registry: CollectorRegistry) -> web.Application:
    """An application with /metrics only (for `lama-agent --metrics`)."""
    app = web.Application()
    app.add_routes([metrics_route(registry)])
    return app


def scheduler_metrics(scheduler: Any) -> SchedulerMetrics:
    """Metrics fed by the scheduler's event bus; a job's model read from its record."""

    def model_of(job_id: str) -> str | None:
        job = scheduler.state.jobs.get(job_id)
        return None if job is None else str(job.model)

    return SchedulerMetrics(scheduler.events, model_of)


@dataclass
class ServeOptions:
    """Where and how the API listens."""

    host: str = "127.0.0.1"
    port: int = 8080
    model: str = "auto"
    token: str | None = None
    input_image: Path | None = None
    max_body: int = 100 * 1024 * 1024


class ApiService:
    """The API and /metrics for one scheduler; started and stopped as the app's setting says."""

    def __init__(self, scheduler: Any, options: ServeOptions) -> None:
        check_bind(options.host, options.token)
        self.options = options
        self.scheduler = scheduler
        self.metrics = scheduler_metrics(scheduler)
        self.api = IOPaintApi(
            scheduler,
            options.model,
            token=options.token,
            input_image=options.input_image,
            max_body=options.max_body,
        )
        self.api.extra_routes.append(metrics_route(self.metrics.registry))
        self.site = HttpSite(self.api.application())

    async def start(self) -> int:
        try:
            port = await self.site.start(self.options.host, self.options.port)
        except BaseException:
            self.metrics.unsubscribe()  # else it counts every job event for as long as we run
            raise
        log.info("IOPaint API listening on %s", self.site.url)
        return port

    async def stop(self) -> None:
        await self.site.stop()
        self.metrics.unsubscribe()


class ApiSwitch:
    """The app's "Serve the IOPaint API" setting: starts, restarts or stops one ApiService."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.service: ApiService | None = None
        self._lock = asyncio.Lock()  # settings applied twice quickly must not race two starts

    async def apply(self, enabled: bool, options: ServeOptions) -> str:
        """Serve with `options`, or stop; returns a line for the status bar."""
        async with self._lock:
            running = self.service
            if running is not None and enabled and running.options == options:
                return f"Serving the IOPaint API on {running.site.url}"
            await self.stop_now()
            if not enabled:
                return ""
            try:
                if options.model == "auto":
                    options = replace(options, model=resolve_auto_model()[0])
                service = ApiService(self.scheduler, options)
                await service.start()
            except (OSError, ValueError) as exc:
                log.warning("the IOPaint API did not start: %s", exc)
                return f"The IOPaint API did not start: {exc}"
            self.service = service
            return f"Serving the IOPaint API on {service.site.url}"

    async def stop_now(self) -> None:
        if self.service is not None:
            service, self.service = self.service, None
            await service.stop()
