"""Add node dialog: pasted links are validated, discovered agents still need their code."""

from __future__ import annotations

import threading

import pytest
import zmq

from lama_desktop.cluster.discovery import DiscoveredAgent
from lama_desktop.cluster.keys import PairingLink
from lama_desktop.ui.add_node_dialog import AddNodeDialog

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("This plugin does not support")]
KEY = zmq.curve_keypair()[0].decode()


def test_pasted_link_is_checked_with_a_clear_error(qtbot) -> None:
    dialog = AddNodeDialog(browse=lambda timeout: [])
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
    assert not ok.isEnabled() and dialog.error.text() == ""

    dialog.link_edit.setText("tcp://10.0.0.5:7890/")  # http(s):// is an HTTP node, see below
    assert "must start with lama://" in dialog.error.text() and not ok.isEnabled()
    dialog.link_edit.setText("lama://10.0.0.5:7890/?key=short&code=ABCDEFGH")
    assert "no valid key=" in dialog.error.text()
    dialog.link_edit.setText(PairingLink("10.0.0.5", 7890, KEY).format())
    assert "pairing code is needed" in dialog.error.text() and not ok.isEnabled()
    good = PairingLink("10.0.0.5", 7890, KEY, "ABCDEFGH")
    dialog.link_edit.setText("  " + good.format() + "\n")
    assert dialog.error.text() == "" and ok.isEnabled()
    assert dialog.link() == good

    with qtbot.waitSignal(dialog.accepted):
        ok.click()


def test_an_http_address_with_a_token_is_an_http_node(qtbot) -> None:
    dialog = AddNodeDialog(browse=lambda timeout: [])
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
    dialog.link_edit.setText("http://gpu-box:8080/?slots=x")
    assert "slots" in dialog.error.text() and not ok.isEnabled()
    dialog.link_edit.setText("https://gpu-box:8080/?slots=2")
    dialog.token_edit.setText("s3cret")
    assert dialog.error.text() == "" and ok.isEnabled() and ok.text() == "Add"
    spec = dialog.http_node()
    assert spec is not None and dialog.link() is None
    assert (spec.url, spec.token, spec.slots) == ("https://gpu-box:8080", "s3cret", 2)
    assert spec.address == "https://gpu-box:8080?slots=2"  # what the journal keeps: no token
    with qtbot.waitSignal(dialog.accepted):
        ok.click()


def test_bad_link_keeps_the_dialog_open(qtbot) -> None:
    dialog = AddNodeDialog(browse=lambda timeout: [])
    qtbot.addWidget(dialog)
    dialog.link_edit.setText("lama://nowhere")
    with qtbot.assertNotEmitted(dialog.accepted):
        dialog.accept()
    assert dialog.link() is None and "needs a host and a port" in dialog.error.text()


def test_discovered_agents_are_listed_off_the_gui_thread(qtbot, qloop) -> None:
    threads: list[bool] = []

    def browse(timeout: float) -> list[DiscoveredAgent]:
        threads.append(threading.current_thread() is threading.main_thread())
        return [DiscoveredAgent("studio", "192.168.1.20", 7890, KEY)]

    dialog = AddNodeDialog(browse=browse)
    qtbot.addWidget(dialog)
    dialog.open()
    qloop.wait_until(lambda: dialog.found.count() == 1, timeout=15)
    assert threads == [False]
    assert "studio" in dialog.found.item(0).text()
    assert "1 agent(s) found" in dialog.search_status.text()

    dialog.found.setCurrentRow(0)
    assert "pairing code is needed" in dialog.error.text() and dialog.link() is None
    dialog.code_edit.setText("abcdefgh")
    assert dialog.link() == PairingLink("192.168.1.20", 7890, KEY, "ABCDEFGH")
    dialog.reject()


def test_search_failure_is_reported(qtbot, qloop) -> None:
    def browse(timeout: float) -> list[DiscoveredAgent]:
        raise OSError("multicast is blocked")

    dialog = AddNodeDialog(browse=browse)
    qtbot.addWidget(dialog)
    dialog.search()
    qloop.wait_until(lambda: "failed" in dialog.search_status.text(), timeout=15)
    assert "multicast is blocked" in dialog.search_status.text()
    assert dialog.search_button.isEnabled()


def test_lan_list_offers_only_addresses_the_agent_listens_on() -> None:
    import socket

    from lama_desktop.ui.add_node_dialog import _accepts, listening

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        assert _accepts("127.0.0.1", port)
        assert not _accepts("127.0.0.1", closed.getsockname()[1])
    finally:
        server.close()
        closed.close()
    # An agent bound to one interface announces all of its machine's addresses.
    agent = DiscoveredAgent("studio", "192.168.1.20", 7890, KEY, ("192.168.1.20", "10.0.0.5"))
    asked: list[tuple[str, int]] = []

    def accepts(host: str, port: int) -> bool:
        asked.append((host, port))
        return host == "10.0.0.5"

    assert [a.host for a in listening([agent], accepts)] == ["10.0.0.5"]
    assert asked == [("192.168.1.20", 7890), ("10.0.0.5", 7890)]
