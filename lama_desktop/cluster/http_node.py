"""An IOPaint-compatible HTTP endpoint as a node: the `NodeLink` that POSTs each job to it.

The link only does I/O. It probes GET /api/v1/server-config and /api/v1/model every heartbeat
(capability and health), posts jobs to /api/v1/inpaint, at most `concurrency` at a time, and
reports what happened as `NodeEvents` stimuli; the state machine decides about retries, down
nodes and moving jobs elsewhere. It never POSTs /api/v1/model: that would switch the model for
every user of the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import aiohttp

import lama_desktop
from lama_desktop.cluster import protocol as p
from lama_desktop.cluster.http_jobs import build_request, error_detail, finish_answer, models_of
from lama_desktop.cluster.node_link import NodeEvents, NodeLink
from lama_desktop.engine.base import EngineError

log = logging.getLogger(__name__)

PROBE_FAILURES_DOWN = 2  # failed probes in a row before a working endpoint is called down
# The most an endpoint's answer may be: a probe's JSON, and a job's image (as big as a message
# may be). A larger or endless answer is cut off instead of filling the desktop's memory.
PROBE_REPLY_BYTES = 1024 * 1024
ANSWER_BYTES = p.MAX_MESSAGE_BYTES
_PERMANENT = (400, 413, 422)  # the request itself is bad: another try cannot help
# Busy, cold-starting or without the model for now: not the job's fault, try elsewhere first.
_DECLINED = (429, 503)


class HttpNodeLink(NodeLink):
    """One endpoint: a probe loop and one task per job, all on the scheduler's loop."""

    def __init__(
        self,
        node_id: str,
        url: str,
        name: str,
        events: NodeEvents,
        *,
        token: str = "",
        heartbeat: float = 1.0,
        concurrency: int = 1,
        request_timeout: float = 600.0,
    ) -> None:
        self.node_id = node_id
        self.url = url.rstrip("/")
        self._name = name
        self.events = events
        self.heartbeat = heartbeat
        self.concurrency = max(1, concurrency)
        self.request_timeout = request_timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(self.concurrency)
        self._jobs: dict[str, asyncio.Task[None]] = {}  # wire id -> its request
        self._generation = 0  # a new number on every reset: older answers are dropped
        self._ready = False
        self._probe: asyncio.Task[None] | None = None
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        # PNG encode and decode of each job, off the event loop.
        self._codec = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lama-http")

    @property
    def name(self) -> str:
        return self._name

    def start(self) -> None:
        """Start probing; READY is reported on the first good answer."""
        self._session = aiohttp.ClientSession(headers=self._headers)
        self._probe = asyncio.get_running_loop().create_task(
            self._probe_forever(), name=f"http-node-{self.node_id}"
        )

    # ----- NodeLink ---------------------------------------------------------------------------

    def send_job(self, msg: p.Job, *payload: Any) -> bool:
        if self._closed or self._session is None or len(payload) != 2:
            return False
        task = asyncio.get_running_loop().create_task(
            self._run(msg, payload[0], payload[1], self._generation)
        )
        self._jobs[msg.job] = task
        task.add_done_callback(lambda done: self._job_done(msg.job, done))
        return True

    def cancel(self, wire_job: str) -> bool:
        task = self._jobs.pop(wire_job, None)
        if task is not None:
            task.cancel()
        # The slot is released once the node confirms, as an agent does: soon, not inline.
        failed = p.Failed(job=wire_job, reason="cancelled", cancelled=True)
        asyncio.get_running_loop().call_soon(self._report_failed, failed, self._generation)
        return True

    def reset(self) -> None:
        self._generation += 1
        self._ready = False
        for task in self._jobs.values():
            task.cancel()  # the state machine has already sent these jobs elsewhere
        self._jobs.clear()

    def close(self) -> None:
        self._closed = True
        self.reset()
        if self._probe is not None:
            self._probe.cancel()
        with contextlib.suppress(RuntimeError):  # no loop: nothing was started
            # Held here: the loop keeps tasks only weakly.
            self._closing = asyncio.get_running_loop().create_task(self.wait_closed())

    async def wait_closed(self) -> None:
        """Wait until the probe and the requests have ended and the session is closed."""
        tasks = [t for t in (self._probe, *self._jobs.values()) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._codec.shutdown(wait=False)

    # ----- health and capability --------------------------------------------------------------

    async def _probe_forever(self) -> None:
        failures = 0
        while not self._closed:
            try:
                model = await self._probe_once()
            except Exception as exc:  # any failure is a reason to show, never a crash
                failures += 1
                reason = _describe(exc)
                if not self._ready or failures >= PROBE_FAILURES_DOWN:
                    if self._ready or failures == 1:
                        log.warning("HTTP node %s (%s): %s", self._name, self.url, reason)
                    self._ready = False
                    self.events.node_down(self.node_id, reason)
            else:
                failures = 0
                if not self._ready:
                    self._ready = True
                    log.info("HTTP node %s ready: model %s", self._name, model)
                    self.events.node_ready(self.node_id, self._ready_message(model))
                self.events.node_seen(self.node_id)
            await asyncio.sleep(self.heartbeat)

    async def _probe_once(self) -> str:
        """GET server-config (health) and model (capability); the model's IOPaint name."""
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=max(2.0, 2 * self.heartbeat))
        for route in ("/api/v1/server-config", "/api/v1/model"):
            async with self._session.get(self.url + route, timeout=timeout) as reply:
                data = await read_capped(reply, PROBE_REPLY_BYTES, f"GET {route}")
                if reply.status != 200:
                    raise EngineError(error_detail(reply.status, data))
        info = _json(data)
        if not isinstance(info, dict) or not isinstance(info.get("name"), str):
            raise EngineError("GET /api/v1/model did not answer IOPaint's ModelInfo")
        return str(info["name"])

    def _ready_message(self, model: str) -> p.Ready:
        host = urlsplit(self.url).hostname or self.url
        info = p.NodeInfo(
            hostname=host, os="http", cpu_model=f"HTTP: IOPaint API, model {model}", cores=0,
            ram_total=0,
        )  # fmt: skip
        return p.Ready(
            node=self._name,
            info=info,
            slots=self.concurrency,
            models=models_of(model),
            version=lama_desktop.__version__,
        )

    # ----- jobs -------------------------------------------------------------------------------

    async def _run(self, msg: p.Job, image: Any, mask: Any, generation: int) -> None:
        async with self._slots:
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            try:
                body, pixels = await loop.run_in_executor(
                    self._codec, build_request, msg, image, mask
                )
            except (EngineError, ValueError) as exc:  # a bad photo or mask: the job's fault
                self._report_failed(
                    p.Failed(job=msg.job, reason=str(exc), permanent=True), generation
                )
                return
            try:
                status, data = await self._post(body)
            except EngineError as exc:  # an answer over the limit
                self._report_failed(p.Failed(job=msg.job, reason=str(exc)), generation)
                return
            except (aiohttp.ClientConnectionError, OSError) as exc:
                if generation == self._generation and not self._closed:
                    self._ready = False
                    self.events.node_down(self.node_id, _describe(exc))
                return
            except TimeoutError:
                reason = f"no answer within {self.request_timeout:.0f} s"
                self._report_failed(p.Failed(job=msg.job, reason=reason), generation)
                return
            if status != 200:
                failed = p.Failed(
                    job=msg.job,
                    reason=error_detail(status, data),
                    permanent=status in _PERMANENT,
                    declined=status in _DECLINED,
                )
                self._report_failed(failed, generation)
                return
            try:
                output, ext, shape = await loop.run_in_executor(
                    self._codec, finish_answer, pixels, data
                )
            except EngineError as exc:
                self._report_failed(p.Failed(job=msg.job, reason=str(exc)), generation)
                return
            if generation == self._generation and not self._closed:
                seconds = time.perf_counter() - started
                result = p.Result(
                    job=msg.job, seconds=seconds, worker=self._name, ext=ext, shape=shape
                )
                self.events.node_seen(self.node_id)
                self.events.job_result(self.node_id, result, [output])

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        async with self._session.post(
            self.url + "/api/v1/inpaint",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        ) as reply:
            return reply.status, await read_capped(reply, ANSWER_BYTES, "POST /api/v1/inpaint")

    def _report_failed(self, failed: p.Failed, generation: int) -> None:
        if generation == self._generation and not self._closed:
            self.events.job_failed(self.node_id, failed)

    def _job_done(self, wire: str, task: asyncio.Task[None]) -> None:
        if self._jobs.get(wire) is task:
            del self._jobs[wire]
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("HTTP node %s: job %s broke", self._name, wire, exc_info=error)
            # A bug here must not leave the job running until its timeout.
            reason = f"{type(error).__name__}: {error}"
            self._report_failed(p.Failed(job=wire, reason=reason), self._generation)


def _json(data: bytes) -> Any:
    import json

    try:
        return json.loads(data)
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    """A one-line reason for the Nodes panel."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "not answering (health probe timed out)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"unreachable: {exc.os_error.strerror or exc}"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return f"unreachable: {exc}"
    return str(exc)


async def read_capped(reply: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The body of `reply`, or EngineError as soon as it is known to exceed `limit` bytes."""
    size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit} bytes"
    too_big = f"the answer to {what} is larger than {size}; not read"
    if reply.content_length is not None and reply.content_length > limit:
        raise EngineError(too_big)
    body = bytearray()
    async for chunk in reply.content.iter_chunked(1024 * 1024):
        body += chunk
        if len(body) > limit:
            raise EngineError(too_big)
    return bytes(body)
