"""Shared test set-up: headless Qt, isolated user folders, no leaked child processes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def isolated_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point every user folder of the app at a fresh temporary folder."""
    root = tmp_path_factory.mktemp("lama-home")
    for var, sub in (
        ("LAMA_DATA_DIR", "data"),
        ("LAMA_CONFIG_DIR", "config"),
        ("LAMA_LOG_DIR", "logs"),
        ("LAMA_MODELS_DIR", "models"),
    ):
        (root / sub).mkdir()
        monkeypatch.setenv(var, str(root / sub))
    return root


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    """Fail a test that leaves a child process of this interpreter running."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    deadline = time.monotonic() + 5.0
    leaked: list[psutil.Process] = []
    while time.monotonic() < deadline:
        leaked = [p for p in me.children(recursive=True) if p.pid not in before and _alive(p)]
        if not leaked:
            return
        time.sleep(0.1)
    names = []
    for p in leaked:
        try:
            names.append(f"{p.pid}:{' '.join(p.cmdline()[:4])}")
            p.kill()
        except psutil.Error:
            pass
    pytest.fail(f"test leaked child processes: {names}")


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
