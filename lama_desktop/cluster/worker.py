"""Worker subprocess: one cached model, jobs from its agent over a private DEALER socket.

Run as `python -m lama_desktop.cluster.worker --connect ipc://... --id ID --device DEV`.
The socket is only touched by the main thread; the job runs on a second thread so heartbeats
keep flowing during a long inference. The worker exits when its agent goes away.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import importlib
import inspect
import io
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import zmq

import lama_desktop
from lama_desktop.cluster import hardware, parent_watch
from lama_desktop.cluster.protocol import (
    MAX_MESSAGE_BYTES,
    Disconnect,
    Failed,
    Heartbeat,
    Job,
    ProtocolError,
    Ready,
    Result,
    decode,
    encode,
)
from lama_desktop.cluster.worker_link import secure_worker_socket
from lama_desktop.cluster.worker_logs import setup_worker_logging
from lama_desktop.engine import pipeline
from lama_desktop.engine.base import (
    EngineError,
    ModelHolder,
    get_model_class,
    missing_file_message,
    model_names,
    resolve_auto_model,
)
from lama_desktop.engine.imageio import ImageError

log = logging.getLogger("lama_desktop.worker")

MISSED_HEARTBEATS = 3
MIN_SILENCE_S = 10.0


def load_plugins(spec: str | None) -> list[str]:
    """Import the comma-separated modules in `spec` (LAMA_PLUGINS); they register engines."""
    loaded = []
    for name in (part.strip() for part in (spec or "").split(",")):
        if name:
            importlib.import_module(name)
            loaded.append(name)
    return loaded


def available_models() -> list[str]:
    """Registered models whose files are present here (OpenCV always is)."""
    return [name for name in model_names() if get_model_class(name).is_available()]


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this process when the agent dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError) as exc:
        log.debug("no parent-death signal: %s", exc)


class JobRunner:
    """Runs jobs through engine.pipeline with the model cached between jobs."""

    def __init__(self, worker_id: str, device: str) -> None:
        self.worker_id = worker_id
        self.device = device
        self.holder = ModelHolder()
        threads = os.environ.get("LAMA_TORCH_THREADS", "")
        self.threads = int(threads) if threads.isdigit() and int(threads) > 0 else None
        self._loaded: tuple[str, str, tuple[tuple[str, Any], ...]] | None = None

    def _model(self, name: str, chosen: tuple[tuple[str, Any], ...] = ()) -> Any:
        cls = get_model_class(name)
        # A CPU-only model (OpenCV) still runs in a GPU worker, on the CPU.
        device = self.device if self.device.split(":")[0] in cls.devices else "cpu"
        key = (name, device, chosen)
        if self._loaded != key or self.holder.current is None:
            options: dict[str, Any] = dict(chosen)
            if self.threads and "threads" in inspect.signature(cls).parameters:
                options["threads"] = self.threads  # the share of cores the agent gave us
            self.holder.switch(name, device=device, **options)
            self._loaded = key
        return self.holder.current

    def run(self, job: Job, image: memoryview, mask: memoryview) -> tuple[Any, list[bytes]]:
        """Process one job; returns (Result, [output]) or (Failed, [])."""
        started = time.perf_counter()
        try:
            settings = pipeline.JobSettings.from_dict(job.settings)
            name = settings.model
            if name == "auto":
                name, _warning = resolve_auto_model()
            cls = get_model_class(name)
            if not cls.is_available():
                return Failed(job=job.job, reason=_missing_reason(cls.name), missing_model=True), []
            model = self._model(cls.name, settings.model_options)
            shape = None
            if job.kind == "file":
                output = pipeline.process_bytes(
                    bytes(image), job.image_name, bytes(mask), job.mask_name, settings, model
                )
                ext = sniff_extension(output)
            elif job.kind == "array":
                if not job.shape or len(job.shape) != 2:
                    raise EngineError(f"array job needs shape [height, width], got {job.shape}")
                height, width = job.shape
                rgb = _array(image, (height, width, 3), "image")
                bits = _array(mask, (height, width), "mask")
                output = pipeline.process_arrays(rgb, bits, model, settings.hd).tobytes()
                ext, shape = "", [height, width]
            else:
                raise EngineError(f"unknown job kind {job.kind!r}")
        except (ImageError, ValueError) as exc:  # bad input or settings: the job's fault
            return Failed(job=job.job, reason=str(exc), permanent=True), []
        except EngineError as exc:  # the engine on this node failed; another node may not
            return Failed(job=job.job, reason=str(exc)), []
        except Exception as exc:  # any bug in one job must not take the worker down
            log.exception("job %s failed", job.job)
            return Failed(job=job.job, reason=f"{type(exc).__name__}: {exc}"), []
        seconds = time.perf_counter() - started
        return Result(job=job.job, seconds=seconds, worker=self.worker_id, ext=ext, shape=shape), [
            output
        ]


_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}


def sniff_extension(data: bytes) -> str:
    """The file extension (with dot) matching encoded image bytes, read from their header."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return _EXTENSIONS.get(image.format or "", ".png")


def _missing_reason(name: str) -> str:
    try:
        return missing_file_message(None, name)
    except EngineError:  # a plugin model with no model-store entry
        return f"model {name!r} is not installed on this node"


def _array(buffer: memoryview, shape: tuple[int, ...], what: str) -> Any:
    import numpy as np

    expected = int(np.prod(shape))
    if buffer.nbytes != expected:
        raise EngineError(f"{what} frame has {buffer.nbytes} bytes, {shape} needs {expected}")
    return np.frombuffer(buffer, dtype=np.uint8).reshape(shape)


class Worker:
    """The main loop: READY, then jobs and heartbeats until the agent says stop or vanishes."""

    def __init__(
        self, sock: zmq.Socket, worker_id: str, device: str, heartbeat: float, parent: int
    ) -> None:
        self.socket = sock
        self.worker_id = worker_id
        self.heartbeat = heartbeat
        self.runner = JobRunner(worker_id, device)
        self.parent = parent
        # A dead agent is caught at once by the parent check (and PDEATHSIG on Linux); the
        # silence limit only catches a hung one, so it is generous enough for a busy agent.
        self.silence = max(MISSED_HEARTBEATS * heartbeat, MIN_SILENCE_S)

    def _send(self, msg: Any, payload: list[bytes] | None = None) -> None:
        self.socket.send_multipart(encode(msg, *(payload or [])), copy=False)

    def _ready(self) -> Ready:
        return Ready(
            node=self.worker_id,
            info=hardware.node_info(),
            slots=1,
            models=available_models(),
            version=lama_desktop.__version__,
            devices=hardware.torch_devices(self.runner.device),
        )

    def run(self) -> int:
        """Serve jobs; returns the exit code."""
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="job")
        running: concurrent.futures.Future[tuple[Any, list[bytes]]] | None = None
        # The job thread wakes the main loop the moment a job ends (a socket pair, since
        # zmq.Poller takes sockets on every platform), so no answer waits for a poll timeout.
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        self._send(self._ready())
        last_heard = last_sent = time.monotonic()
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(wake_read, zmq.POLLIN)
        try:
            while True:
                now = time.monotonic()
                if now - last_heard > self.silence or os.getppid() != self.parent:
                    log.warning("worker %s: agent gone; exiting", self.worker_id)
                    return 3
                if now - last_sent >= self.heartbeat:
                    self._send(Heartbeat())
                    last_sent = now
                if running is not None and running.done():
                    reply, output = running.result()
                    self._send(reply, output)
                    last_sent = time.monotonic()
                    running = None
                ready = dict(poller.poll(timeout=int(self.heartbeat * 1000)))
                if wake_read.fileno() in ready:
                    with contextlib.suppress(BlockingIOError):
                        wake_read.recv(64)
                if self.socket not in ready:
                    continue
                frames = self.socket.recv_multipart(copy=False)
                last_heard = time.monotonic()
                try:
                    msg, payload = decode(frames)
                except ProtocolError as exc:
                    log.warning("worker %s: dropped a bad message: %s", self.worker_id, exc)
                    continue
                if isinstance(msg, Disconnect):
                    log.info("worker %s: asked to stop (%s)", self.worker_id, msg.reason)
                    return 0
                if isinstance(msg, Job):
                    if running is not None:
                        self._send(Failed(job=msg.job, reason="worker busy; job sent twice"))
                        continue
                    running = pool.submit(self.runner.run, msg, payload[0], payload[1])
                    running.add_done_callback(lambda _f: wake_write.send(b"!"))
        finally:
            wake_read.close()
            wake_write.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker subprocess."""
    parser = argparse.ArgumentParser(prog="lama-worker", description=__doc__)
    parser.add_argument("--connect", required=True, help="the agent's worker endpoint")
    parser.add_argument("--id", required=True, help="this worker's routing id")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--parent", type=int, default=0, help="the agent's pid")
    args = parser.parse_args(argv)
    secrets = parent_watch.start()  # the agent's pipe: tcp keys, and EOF when it is gone
    if parent_watch.use_pdeathsig():
        _die_with_parent()
    parent = args.parent or os.getppid()
    if os.getppid() != parent:
        return 3  # the agent died while this process was starting (before PDEATHSIG was set)
    setup_worker_logging(args.id)  # JSON lines that the agent logs again, when it reads them
    try:
        load_plugins(os.environ.get("LAMA_PLUGINS"))
    except Exception as exc:
        log.error("could not load LAMA_PLUGINS: %s", exc)
        return 2
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, args.id.encode())
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.SNDTIMEO, 5000)
    secure_worker_socket(sock, secrets)
    sock.connect(args.connect)
    try:
        code = Worker(sock, args.id, args.device, args.heartbeat, parent).run()
    except zmq.Again:
        log.error("worker %s: agent not answering; exiting", args.id)
        code = 3
    sock.close(linger=1000)
    context.term()
    # The job thread may still be inside a model call; do not wait for it.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
