"""A missing model file: edits fall back to OpenCV and say so; the download shows progress
(served by a local HTTP server) and the chosen model is used once its file is in place."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lama_desktop.config import AppDirs
from lama_desktop.ui.editor.model_banner import FALLBACK_MODEL, ModelBanner
from lama_desktop.ui.model_downloads import ModelDownloads
from tests.ui.conftest import LoopRunner, Recorder

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints"),
    pytest.mark.usefixtures("no_leaked_widgets"),
]
PAYLOAD = bytes(range(256)) * 12_000  # ~3 MiB, several progress steps


@pytest.fixture
def model_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

        def log_message(self, *args: Any) -> None:
            pass  # keep the test output quiet

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/big-lama.pt"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_missing_model_falls_back_then_downloads_with_progress(
    qtbot: Any,
    qloop: LoopRunner,
    app_env: AppDirs,
    model_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAMA_MODEL_URL", model_server)
    monkeypatch.setenv("LAMA_MODEL_MD5", hashlib.md5(PAYLOAD).hexdigest())
    downloads = ModelDownloads(app_env.models)
    banner = ModelBanner(downloads)
    qtbot.addWidget(banner)
    banner.show_for("lama")
    assert not banner.isHidden()
    assert banner.effective_model("lama") == FALLBACK_MODEL
    assert "OpenCV" in banner._label.text()
    assert banner.effective_model("opencv-telea") == "opencv-telea"

    progress = Recorder(downloads.progressed)
    done = Recorder(banner.downloaded)
    qloop.run(banner.download(), timeout=30)
    assert done.calls == [("lama",)]
    assert progress.calls and progress.calls[-1] == ("lama", len(PAYLOAD), len(PAYLOAD))
    assert (app_env.models / "big-lama.pt").read_bytes() == PAYLOAD
    assert banner.effective_model("lama") == "lama"
    assert banner.isHidden()


def test_failed_download_keeps_opencv_and_offers_retry(
    qtbot: Any, qloop: LoopRunner, app_env: AppDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lama_desktop.engine.modelstore import DownloadError
    from lama_desktop.ui import async_slot as slots

    shown: list[str] = []
    slots.set_error_handler(lambda _p, _t, error: shown.append(str(error)))
    try:
        monkeypatch.setenv("LAMA_MODEL_URL", "http://127.0.0.1:9/nothing-here.pt")
        banner = ModelBanner(ModelDownloads(Path(app_env.models)))
        qtbot.addWidget(banner)
        banner.show_for("lama")
        with pytest.raises(DownloadError):
            qloop.run(banner.download(), timeout=30)
    finally:
        slots.set_error_handler(slots.show_error)
    assert shown and "Could not download" in shown[0]
    assert banner.effective_model("lama") == FALLBACK_MODEL
    assert banner._button.text() == "Retry" and banner._button.isEnabled()
