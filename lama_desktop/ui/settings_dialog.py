"""The settings dialog: edits a copy of AppSettings and hands it back on OK or Apply."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lama_desktop.config import DEVICES, HD_STRATEGIES, AppSettings, ConfigError
from lama_desktop.ui.model_choice import model_box


class SettingsDialog(QDialog):
    """Every setting of the app; `applied(AppSettings)` carries a validated copy."""

    applied = Signal(object)

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._base = settings
        self.model = model_box(settings.model, self)
        self.device = self._combo(DEVICES, settings.device, editable=True)
        self.hd_strategy = self._combo(HD_STRATEGIES, settings.hd_strategy)
        self.run_on_release = QCheckBox("Run as soon as a stroke ends", self)
        self.run_on_release.setChecked(settings.run_mode == "release")
        self.brush_size = self._spin(1, 500, settings.brush_size)
        self.jpeg_quality = self._spin(1, 100, settings.jpeg_quality)
        self.jpeg_quality.setToolTip("For JPEGs saved from other formats; a JPEG keeps its own")
        self.local_workers = QCheckBox("Use this computer's workers", self)
        self.local_workers.setChecked(settings.local_workers)
        self.worker_count = self._spin(0, 64, settings.local_worker_count)
        self.worker_count.setSpecialValueText("auto")
        self.job_timeout = QDoubleSpinBox(self)
        self.job_timeout.setRange(1, 86400)
        self.job_timeout.setSuffix(" s")
        self.job_timeout.setValue(settings.job_timeout)
        self.close_to_tray = QCheckBox("Keep working in the tray when the window closes", self)
        self.close_to_tray.setChecked(settings.close_to_tray)
        self.serve_api = QCheckBox("Serve the IOPaint API (and /metrics)", self)
        self.serve_api.setChecked(settings.serve_api)
        self.serve_host = QLineEdit(settings.serve_host, self)
        self.serve_port = self._spin(1, 65535, settings.serve_port)
        self.serve_token = QLineEdit(settings.serve_token, self)
        self.serve_token.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        self.serve_token.setPlaceholderText("needed for any address but 127.0.0.1")
        self.error = QLabel(self)
        self.error.setStyleSheet("color: #b00020")
        self.error.setWordWrap(True)

        editor = self._group(
            "Editor",
            [
                ("Model", self.model),
                ("Device", self.device),
                ("HD strategy", self.hd_strategy),
                ("", self.run_on_release),
                ("Brush size", self.brush_size),
                ("JPEG quality", self.jpeg_quality),
            ],
        )
        cluster = self._group(
            "Cluster",
            [
                ("", self.local_workers),
                ("Local workers", self.worker_count),
                ("Job timeout", self.job_timeout),
                ("", self.close_to_tray),
            ],
        )
        api = self._group(
            "IOPaint API",
            [
                ("", self.serve_api),
                ("Address", self.serve_host),
                ("Port", self.serve_port),
                ("Bearer token", self.serve_token),
            ],
        )
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Apply
            | QDialogButtonBox.StandardButton.Cancel,
            self,
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.Apply).clicked.connect(self.apply)
        layout = QVBoxLayout(self)
        layout.addWidget(editor)
        layout.addWidget(cluster)
        layout.addWidget(api)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def _combo(self, choices: tuple[str, ...], value: str, editable: bool = False) -> QComboBox:
        box = QComboBox(self)
        box.addItems(list(choices))
        box.setEditable(editable)
        box.setCurrentText(value)
        return box

    def _spin(self, low: int, high: int, value: int) -> QSpinBox:
        box = QSpinBox(self)
        box.setRange(low, high)
        box.setValue(value)
        return box

    def _group(self, title: str, rows: list[tuple[str, QWidget]]) -> QGroupBox:
        group = QGroupBox(title, self)
        form = QFormLayout(group)
        for label, widget in rows:
            form.addRow(label, widget)
        return group

    def values(self) -> AppSettings:
        """A validated copy of the settings with what the dialog shows; raises ConfigError."""
        settings = dataclasses.replace(
            self._base,
            recent_files=list(self._base.recent_files),
            model=str(self.model.currentData()),
            device=self.device.currentText().strip(),
            hd_strategy=self.hd_strategy.currentText(),
            run_mode="release" if self.run_on_release.isChecked() else "manual",
            brush_size=self.brush_size.value(),
            jpeg_quality=self.jpeg_quality.value(),
            local_workers=self.local_workers.isChecked(),
            local_worker_count=self.worker_count.value(),
            job_timeout=self.job_timeout.value(),
            close_to_tray=self.close_to_tray.isChecked(),
            serve_api=self.serve_api.isChecked(),
            serve_host=self.serve_host.text().strip(),
            serve_port=self.serve_port.value(),
            serve_token=self.serve_token.text().strip(),
        )
        settings.validate()
        return settings

    def apply(self) -> bool:
        """Emit `applied` with the new settings; a bad value is shown and nothing changes."""
        try:
            settings = self.values()
        except ConfigError as exc:
            self.error.setText(str(exc))
            return False
        self.error.clear()
        self.applied.emit(settings)
        return True

    def accept(self) -> None:
        if self.apply():
            super().accept()
