"""The model chooser: each model shown by one name everywhere, "LaMa (lama)" (title and id)."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QWidget

from lama_desktop.config import MODELS
from lama_desktop.engine.base import get_spec


def model_label(name: str) -> str:
    """ "LaMa (lama)": the title, then the id that `--model` and settings.toml take."""
    return get_spec(name).label


def model_box(current: str, parent: QWidget | None = None) -> QComboBox:
    """A combo box of the models; itemData is the id, so currentData() is what to run."""
    box = QComboBox(parent)
    for name in MODELS:
        box.addItem(model_label(name), name)
    box.setCurrentIndex(max(0, box.findData(current)))
    return box
