"""Add node dialog: a pairing link, an agent found on the LAN, or an http(s):// IOPaint endpoint."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import Shiboken

from lama_desktop.cluster.http_address import HttpNodeSpec, is_http_address
from lama_desktop.cluster.keys import PairingLink
from lama_desktop.ui.async_slot import async_slot

if TYPE_CHECKING:
    from lama_desktop.cluster.discovery import DiscoveredAgent

log = logging.getLogger(__name__)

Browse = Callable[[float], "list[DiscoveredAgent]"]
BROWSE_SECONDS = 2.0


PROBE_SECONDS = 0.5


def _browse_lan(timeout: float) -> list[DiscoveredAgent]:
    """zeroconf browse, imported on first use: zeroconf costs ~0.2 s, not worth it at start-up."""
    from lama_desktop.cluster.discovery import browse

    return listening(browse(timeout))


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            return True
    except OSError:
        return False


def listening(
    agents: list[DiscoveredAgent], accepts: Callable[[str, int], bool] = _accepts
) -> list[DiscoveredAgent]:
    """One entry per announced address the agent really listens on.

    An agent announces every address of its machine, but one bound to a single interface
    answers on that one only: an address that refuses a connection is not offered.
    """
    found = []
    for agent in agents:
        for host in agent.addresses or (agent.host,):
            if accepts(host, agent.port):
                found.append(replace(agent, host=host))
    return found


class AddNodeDialog(QDialog):
    """Asks for a pairing link; `link()` is the validated link once the dialog is accepted.

    `browse` lists agents announcing on the LAN; it blocks for a couple of seconds, so it
    runs in an executor thread, never in the slot itself.
    """

    def __init__(self, parent: QWidget | None = None, browse: Browse | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add node")
        self.setMinimumWidth(520)
        self._browse = browse or _browse_lan
        self._link: PairingLink | None = None
        self._http: HttpNodeSpec | None = None
        self._search: asyncio.Future[object] | None = None

        intro = QLabel(
            "On the other computer run <code>lama-agent pair</code> and paste the link it "
            "prints, or pick it from the list below and type its pairing code. An IOPaint "
            "server (or any endpoint with its API) is added by its http(s):// address.",
            self,
        )
        intro.setWordWrap(True)
        self.link_edit = QLineEdit(self)
        self.link_edit.setPlaceholderText("lama://192.168.1.20:7890/?key=…&code=…  or  http://…")
        self.link_edit.textChanged.connect(self._validate)
        self.token_edit = QLineEdit(self)
        self.token_edit.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        self.token_edit.setPlaceholderText(
            "bearer token of an http(s):// endpoint, if it needs one"
        )
        self.token_edit.textChanged.connect(self._validate)

        self.found = QListWidget(self)
        self.found.setMaximumHeight(110)
        self.found.currentItemChanged.connect(self._picked)
        self.search_button = QPushButton("Search again", self)
        self.search_button.clicked.connect(self.search)
        self.code_edit = QLineEdit(self)
        self.code_edit.setPlaceholderText("8-character code shown by the agent")
        self.code_edit.textChanged.connect(self._validate)
        self.search_status = QLabel(self)
        group = QGroupBox("Agents on this network", self)
        group_layout = QVBoxLayout(group)
        row = QHBoxLayout()
        row.addWidget(self.search_status, 1)
        row.addWidget(self.search_button)
        group_layout.addLayout(row)
        group_layout.addWidget(self.found)
        code_form = QFormLayout()
        code_form.addRow("Pairing code:", self.code_edit)
        group_layout.addLayout(code_form)

        self.error = QLabel(self)
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c62828")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Pair")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("Pairing link:", self.link_edit)
        form.addRow("Token:", self.token_edit)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(group)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self._validate()

    def link(self) -> PairingLink | None:
        """The link to pair with: valid and with a code, or None while the input is not."""
        return self._link

    def http_node(self) -> HttpNodeSpec | None:
        """The endpoint to add when the input is an http(s):// address, else None."""
        return self._http

    def _candidate(self) -> str:
        text = self.link_edit.text().strip()
        if text:
            return text
        item = self.found.currentItem()
        if item is None:
            return ""
        agent: DiscoveredAgent = item.data(Qt.ItemDataRole.UserRole)
        code = self.code_edit.text().strip().upper()
        return PairingLink(agent.host, agent.port, agent.server_key, code).format()

    def _validate(self, *_: object) -> None:
        text = self._candidate()
        self._link, self._http, message = None, None, ""
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText("Pair")
        if is_http_address(text):
            try:
                spec = HttpNodeSpec.parse(text)
            except ValueError as exc:
                message = str(exc)
            else:
                token = self.token_edit.text().strip() or spec.token
                self._http = HttpNodeSpec(spec.url, token, spec.slots)
                ok.setText("Add")
        elif text:
            try:
                link = PairingLink.parse(text)
            except ValueError as exc:
                message = str(exc)
            else:
                if link.code:
                    self._link = link
                else:
                    message = (
                        "A pairing code is needed: run `lama-agent pair` on that computer "
                        "and copy the code (or the whole link) it prints."
                    )
        self.error.setText(message)
        ok.setEnabled(self._link is not None or self._http is not None)

    def _picked(self, *_: object) -> None:
        if self.found.currentItem() is not None and self.link_edit.text().strip():
            self.link_edit.clear()  # the picked agent wins over an old pasted link
        self._validate()

    def accept(self) -> None:
        """Close only with a valid link; a bad one keeps the dialog open with its error."""
        self._validate()
        if self._link is not None or self._http is not None:
            super().accept()

    def open(self) -> None:
        """Show the dialog (window-modal, never exec()) and start looking for agents."""
        super().open()
        self.search()

    @async_slot
    async def search(self) -> None:
        """List the agents that announce themselves on the LAN (blocking browse in a thread)."""
        if not Shiboken.isValid(self):
            return  # closed before the search got its first turn
        self.search_button.setEnabled(False)
        self.search_status.setText("Searching…")
        loop = asyncio.get_running_loop()
        failure = ""
        try:
            agents = await loop.run_in_executor(None, self._browse, BROWSE_SECONDS)
        except OSError as exc:  # no network, multicast blocked: say so, the link still works
            agents, failure = [], f"Search failed: {exc}"
        if not Shiboken.isValid(self):
            return  # the dialog was closed while the search ran
        self.search_button.setEnabled(True)
        if not failure:
            failure = f"{len(agents)} agent(s) found." if agents else "No agent announces here."
        self.search_status.setText(failure)
        self.found.clear()
        for agent in agents:
            item = QListWidgetItem(f"{agent.name}  —  {agent.host}:{agent.port}", self.found)
            item.setData(Qt.ItemDataRole.UserRole, agent)
