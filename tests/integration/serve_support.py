"""`lama-desktop serve` as a real process on 127.0.0.1, and a small HTTP client for its API."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lama_desktop.engine.base import create_model
from lama_desktop.engine.hd import HDConfig, run_with_strategy

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token-7f3a"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def rgba(self) -> np.ndarray:
        with Image.open(io.BytesIO(self.body)) as image:
            return np.asarray(image.convert("RGBA"))

    def rgb(self) -> np.ndarray:
        with Image.open(io.BytesIO(self.body)) as image:
            return np.asarray(image.convert("RGB"))


class ServeProcess:
    """`lama-desktop serve --port 0 ...`; `url` is the address it printed."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        token: str | None = TOKEN,
        env: dict[str, str] | None = None,
    ) -> None:
        command = [sys.executable, "-m", "lama_desktop.cli", "serve", "--port", "0", *args]
        if token:
            command += ["--token", token]
        env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {}), "LAMA_DATA_DIR": str(data_dir)}
        self.token = token
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
            cwd=REPO,
        )  # fmt: skip
        self.url = ""
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("IOPaint API on "):
                self.url = line.split()[3]
                break
        assert self.url, f"serve printed no address (exit {self.process.poll()})"

    def request(
        self, path: str, body: Any = None, *, raw: bytes | None = None, token: str | None = ""
    ) -> Reply:
        """GET (no body) or POST JSON; `token` "" means the server's own, None means none."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        token = self.token if token == "" else token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers), error.read())

    def wait_ready(self, timeout: float = 60) -> None:
        """Until a node is working (server-config lists a model from a node)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if metric(self.request("/metrics").body, "lama_workers") > 0:
                return
            time.sleep(0.1)
        raise TimeoutError("no node became ready")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def metric(text: bytes, name: str) -> float:
    """The sum of a metric's samples (every label set) in Prometheus text."""
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith((f"{name} ", f"{name}{{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def encode(array: np.ndarray, fmt: str = "PNG", **options: Any) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt, **options)
    return out.getvalue()


def b64(data: bytes, prefix: str = "") -> str:
    return prefix + base64.b64encode(data).decode()


def photo(seed: int, height: int = 48, width: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A distinct noisy photo and a mask with a hole somewhere in its middle."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    top, left = 8 + seed % 7, 10 + seed % 11
    mask[top : top + 14, left : left + 18] = 255
    return rgb, mask


def expected(
    rgb: np.ndarray, mask: np.ndarray, model: str = "opencv-ns", radius: int = 4, **hd: Any
) -> np.ndarray:
    """What the engine itself makes of it, in this process."""
    engine = create_model(model, radius=radius)
    return run_with_strategy(engine, rgb, mask, HDConfig(**hd))
