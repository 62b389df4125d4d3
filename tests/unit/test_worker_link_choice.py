"""Transport choice, the frozen launcher and the parent watch's pipe reading, without processes."""

from __future__ import annotations

import io
import sys
import threading

import pytest

from lama_desktop import frozen_main
from lama_desktop.cluster import parent_watch, worker_link


def test_the_transport_is_ipc_on_posix_unless_forced_and_a_bad_switch_is_named() -> None:
    assert worker_link.choose_transport({}) == ("ipc" if sys.platform != "win32" else "tcp")
    assert worker_link.choose_transport({"LAMA_WORKER_TRANSPORT": "TCP"}) == "tcp"
    assert worker_link.choose_transport({"LAMA_WORKER_TRANSPORT": "ipc"}) == "ipc"
    with pytest.raises(ValueError, match="LAMA_WORKER_TRANSPORT must be ipc or tcp"):
        worker_link.choose_transport({"LAMA_WORKER_TRANSPORT": "udp"})


def test_a_frozen_app_starts_workers_from_its_own_executable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert worker_link.launcher() == [sys.executable, "-m", "lama_desktop.cluster.worker"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert worker_link.launcher() == [sys.executable, "--lama-worker"]
    assert frozen_main.WORKER_FLAG == worker_link.WORKER_FLAG


def test_the_frozen_entry_dispatches_on_its_name_and_the_worker_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lama_desktop import cli
    from lama_desktop.cluster import agent_cli, worker

    calls: list[tuple[str, list[str]]] = []
    for module, name in ((cli, "cli"), (agent_cli, "agent"), (worker, "worker")):
        monkeypatch.setattr(module, "main", lambda argv, name=name: calls.append((name, argv)) or 0)
    frozen_main.main(["/opt/lama-desktop/lama-desktop", "batch", "x"])
    frozen_main.main(["C:\\Lama\\lama-agent.exe", "pair"])
    frozen_main.main(["/opt/lama-desktop/lama-agent", "--lama-worker", "--id", "w0"])
    assert calls == [("cli", ["batch", "x"]), ("agent", ["pair"]), ("worker", ["--id", "w0"])]


def test_the_parent_watch_reads_the_secrets_then_reports_end_of_file() -> None:
    gone = threading.Event()
    stream = io.BytesIO(b'{"server_public": "k"}\n')
    secrets = parent_watch.start({"LAMA_WORKER_LINK": "1"}, stream, gone.set)
    assert secrets == {"server_public": "k"}
    assert gone.wait(5)


def test_the_parent_watch_stays_off_without_a_link_and_catches_a_cut_first_line() -> None:
    gone = threading.Event()
    assert parent_watch.start({}, io.BytesIO(b""), gone.set) == {}
    assert not gone.is_set()
    assert parent_watch.start({"LAMA_WORKER_LINK": "1"}, io.BytesIO(b'{"par'), gone.set) == {}
    assert gone.is_set()
    assert not parent_watch.use_pdeathsig({"LAMA_WORKER_PARENT_WATCH": "pipe"})
