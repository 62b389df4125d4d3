"""Opt-in: a real IOPaint 1.6 server as an HTTP node gives the pixels of our local run.

Needs IOPaint in its own venv (benchmarks/iopaint_setup.sh); set LAMA_IOPAINT_VENV to it
(default /opt/iopaint-venv). Skipped when it is not there.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lama_desktop.cluster.batch_run import run_plan
from lama_desktop.engine.base import create_model
from lama_desktop.engine.pipeline import JobSettings, process_bytes
from lama_desktop.engine.plan import plan_batch
from tests.integration.cluster_support import make_folder, read_rgb

VENV = Path(os.environ.get("LAMA_IOPAINT_VENV", "/opt/iopaint-venv"))
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (VENV / "bin" / "iopaint").is_file(),
        reason=f"IOPaint 1.6 not installed at {VENV} (benchmarks/iopaint_setup.sh)",
    ),
]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def iopaint(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """`iopaint start --model=MODEL` on 127.0.0.1; MODEL from the test's parameter."""
    model, model_dir = request.param, tmp_path / "iopaint-models"
    if model == "lama":  # the stand-in, where IOPaint looks for big-lama.pt (no md5 check)
        from lama_desktop.engine.lama_arch import export_torchscript

        target = model_dir / "torch" / "hub" / "checkpoints" / "big-lama.pt"
        target.parent.mkdir(parents=True)
        export_torchscript(target, config="tiny")
    port = _free_port()
    process = subprocess.Popen(
        [str(VENV / "bin" / "iopaint"), "start", f"--model={model}", "--device=cpu",
         "--host=127.0.0.1", f"--port={port}", f"--model-dir={model_dir}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/api/v1/model", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, f"IOPaint exited with {process.returncode}"
                assert time.monotonic() < deadline, "IOPaint did not start within 120 s"
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.parametrize(
    ("iopaint", "model"), [("cv2", "opencv-ns"), ("lama", "lama")], indirect=["iopaint"]
)
def test_a_batch_through_iopaint_matches_our_local_run(
    iopaint: str, model: str, tmp_path: Path
) -> None:
    images, masks = make_folder(tmp_path / "in", 4)
    settings = JobSettings(model=model)
    outcomes = run_plan(
        plan_batch(images, masks, tmp_path / "out"), settings, 0, [iopaint],
        data_dir=tmp_path / "data", progress=lambda line: None,
    )  # fmt: skip
    assert [o.status for o in outcomes] == ["done"] * 4, [o.reason for o in outcomes]
    model_file = tmp_path / "iopaint-models" / "torch" / "hub" / "checkpoints" / "big-lama.pt"
    options = {"model_path": model_file} if model == "lama" else {}
    engine = create_model(model, device="cpu", **options)
    for outcome in outcomes:
        assert outcome.output is not None
        mask = masks / outcome.image.name
        local = process_bytes(outcome.image.read_bytes(), outcome.image.name, mask.read_bytes(),
                              mask.name, settings, engine)  # fmt: skip
        out = tmp_path / "local.png"
        out.write_bytes(local)
        assert np.array_equal(read_rgb(outcome.output), read_rgb(out)), outcome.image.name
    with Image.open(outcomes[0].output) as written:
        assert written.format == "PNG"
