"""The app's "Serve the IOPaint API" setting: off by default, served on the app's own loop."""

from __future__ import annotations

import base64
import dataclasses
import io
import socket
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lama_desktop.config import AppDirs, AppSettings
from lama_desktop.ui.settings_dialog import SettingsDialog

pytestmark = [
    pytest.mark.gui,
    pytest.mark.integration,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _png(array: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


async def _inpaint(url: str, rgb: np.ndarray, mask: np.ndarray) -> tuple[int, bytes]:
    import aiohttp

    body = {"image": _png(rgb), "mask": _png(mask)}
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as reply:
        return reply.status, await reply.read()


def test_the_setting_starts_and_stops_the_api_on_the_apps_loop(
    qtbot: Any, qloop: Any, cluster: Any, settings: AppSettings, app_env: AppDirs
) -> None:
    from lama_desktop.app import _serve_api_as_set
    from lama_desktop.ui.bridge import ClusterBridge
    from lama_desktop.ui.main_window import MainWindow

    assert AppSettings().serve_api is False
    window = MainWindow(cluster.scheduler, ClusterBridge(cluster.scheduler.events), settings,
                        dirs=app_env)  # fmt: skip
    qtbot.addWidget(window)
    switch = _serve_api_as_set(cluster.scheduler, window, settings)
    try:
        port = _free_port()
        qloop.run(window.apply_settings(dataclasses.replace(settings, serve_api=True,
                                                            serve_port=port)))  # fmt: skip
        qloop.wait_until(lambda: switch.service is not None, timeout=10)
        assert f"127.0.0.1:{port}" in window.statusBar().currentMessage()
        rgb = np.random.default_rng(3).integers(0, 255, (32, 40, 3), dtype=np.uint8)
        mask = np.zeros((32, 40), np.uint8)
        mask[8:20, 10:30] = 255
        url = f"http://127.0.0.1:{port}/api/v1/inpaint"
        status, data = qloop.run(_inpaint(url, rgb, mask), timeout=30)
        assert status == 200
        out = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.array_equal(out[mask == 0], rgb[mask == 0])
        assert not np.array_equal(out[mask > 0], rgb[mask > 0])
        qloop.run(window.apply_settings(dataclasses.replace(settings, serve_api=False)))
        qloop.wait_until(lambda: switch.service is None, timeout=10)
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
    finally:
        qloop.run(switch.stop_now(), timeout=10)
        window.shutdown()


def test_dialog_edits_the_api_setting_and_wants_a_token_off_loopback(
    qtbot: Any, app_env: AppDirs
) -> None:
    dialog = SettingsDialog(AppSettings())
    qtbot.addWidget(dialog)
    assert not dialog.serve_api.isChecked()
    dialog.serve_api.setChecked(True)
    dialog.serve_host.setText("0.0.0.0")
    with qtbot.assertNotEmitted(dialog.applied):
        assert not dialog.apply()
    assert "serve_token" in dialog.error.text()
    dialog.serve_token.setText("s3cret")
    dialog.serve_port.setValue(8123)
    with qtbot.waitSignal(dialog.applied) as applied:
        assert dialog.apply()
    new: AppSettings = applied.args[0]
    assert (new.serve_api, new.serve_host, new.serve_port, new.serve_token) == (
        True, "0.0.0.0", 8123, "s3cret",
    )  # fmt: skip


def test_the_api_is_not_imported_while_the_setting_is_off() -> None:
    """aiohttp and the API take ~0.3 s to import: not at every start, only when serving."""
    import subprocess
    import sys

    code = (
        "import asyncio, sys\n"
        "from types import SimpleNamespace\n"
        "from lama_desktop.app import _serve_api_as_set\n"
        "from lama_desktop.config import AppSettings\n"
        "window = SimpleNamespace(settingsApplied=SimpleNamespace(connect=lambda slot: None))\n"
        "async def main():\n"
        "    api = _serve_api_as_set(None, window, AppSettings())\n"
        "    await asyncio.sleep(0.05)\n"
        "    await api.stop_now()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in ('aiohttp', 'lama_desktop.cluster.serving') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
