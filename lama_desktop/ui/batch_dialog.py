"""Batch dialog: dropped folders or photos -> masks, output folder, model -> a plan to queue."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import Shiboken

from lama_desktop.config import HD_STRATEGIES, AppSettings
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.outputs import unwritable_output
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import IMAGE_EXTENSIONS, BatchPlan, PlanError, Skipped, plan_batch
from lama_desktop.ui.async_slot import async_slot
from lama_desktop.ui.model_choice import model_box

log = logging.getLogger(__name__)
RESCAN_DELAY_MS = 250  # typing a path rescans once the user pauses, not on every key


@dataclass(frozen=True)
class Guess:
    """Defaults found on disk for a drop: a mask folder next to the photos and an output folder."""

    masks: Path | None
    output: Path
    name: str


def guess_defaults(paths: list[Path]) -> Guess:
    """Look next to the dropped photos for a mask folder and pick an unused output folder.

    Touches the disk (a few stat calls): run it in an executor thread.
    """
    first = paths[0] if paths else Path.home()
    base = first if first.is_dir() else first.parent
    name = base.name or "batch"
    masks = None
    for candidate in (base / "masks", base.parent / f"{base.name}_masks", base.parent / "masks"):
        if candidate.is_dir() and candidate != base:
            masks = candidate
            break
    output = base.parent / f"{name}_cleaned"
    return Guess(masks=masks, output=output, name=name)


def plan_dropped(paths: list[Path], masks: Path, out: Path) -> BatchPlan:
    """One plan for every dropped folder and photo (engine.plan.plan_batch for each).

    With several folders each gets its own subfolder of `out`, so same-named photos from
    different folders never collide; a collision left over is reported as skipped. Touches
    the disk: run it in an executor thread.
    """
    folders = [p for p in paths if p.is_dir()]
    merged = BatchPlan(jobs=[], skipped=[], already_done=[])
    problems: list[Skipped] = []
    for path in paths:
        if not path.exists():
            merged.skipped.append(Skipped(path, "not found"))
            continue
        if not path.is_dir() and path.suffix.lower() not in IMAGE_EXTENSIONS:
            merged.skipped.append(Skipped(path, "not a photo this app reads"))
            continue
        target = out / path.name if path.is_dir() and len(folders) > 1 else out
        try:
            part = plan_batch(path, masks, target)
        except PlanError as exc:
            problems.append(Skipped(path, str(exc)))
            continue
        merged.jobs += part.jobs
        merged.skipped += part.skipped
        merged.already_done += part.already_done
    if problems and not (merged.jobs or merged.already_done or merged.skipped):
        raise PlanError("; ".join(p.reason for p in problems))
    merged.skipped += problems  # a folder with no photos, say, next to folders that have some
    claimed: dict[Path, Path] = {}
    kept = []
    for job in merged.jobs:
        first = claimed.setdefault(job.output, job.image)
        if first == job.image:
            kept.append(job)
        else:
            reason = f"{first} already writes {job.output.name}; rename one of them"
            merged.skipped.append(Skipped(job.image, reason))
    merged.jobs = kept
    problem = unwritable_output(merged)
    if problem is not None:  # said now, not after every photo was cleaned
        raise PlanError(problem)
    return merged


class BatchDialog(QDialog):
    """Plans a batch; `result_batch()` is (BatchPlan, JobSettings, name) once accepted."""

    def __init__(
        self, paths: list[Path], settings: AppSettings, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Batch")
        self.setMinimumWidth(600)
        self.paths = [Path(p) for p in paths]
        self.settings = settings
        self.plan: BatchPlan | None = None
        self._generation = 0  # a newer scan makes an older one's result stale
        self._timer = QTimer(self, singleShot=True, interval=RESCAN_DELAY_MS)
        self._timer.timeout.connect(self.rescan)

        self.inputs = QLabel(self)
        self.inputs.setWordWrap(True)
        self.add_folder_button = QPushButton("Choose photos folder…", self)
        self.add_folder_button.clicked.connect(lambda: self._browse_folder(self._set_input))
        self.mask_folder_radio = QRadioButton("Mask folder (matched by name)", self)
        self.mask_file_radio = QRadioButton("One mask for all photos", self)
        self.mask_folder_radio.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.mask_folder_radio)
        group.addButton(self.mask_file_radio)
        self.masks_edit = QLineEdit(self)
        self.masks_edit.setPlaceholderText("folder with a mask per photo (same name)")
        masks_browse = QPushButton("Browse…", self)
        masks_browse.clicked.connect(self._browse_masks)
        self.output_edit = QLineEdit(self)
        output_browse = QPushButton("Browse…", self)
        output_browse.clicked.connect(lambda: self._browse_folder(self.output_edit.setText))
        self.name_edit = QLineEdit(self)
        self.model_box = model_box(settings.model, self)
        self.hd_box = QComboBox(self)
        self.hd_box.addItems(list(HD_STRATEGIES))
        self.hd_box.setCurrentText(settings.hd_strategy)
        self.summary = QLabel("Looking for photos and masks…", self)
        self.summary.setWordWrap(True)
        self.unpaired = QListWidget(self)
        self.unpaired.setMaximumHeight(140)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Queue batch")
        self.ok_button.setEnabled(False)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        photos_row = QHBoxLayout()
        photos_row.addWidget(self.inputs, 1)
        photos_row.addWidget(self.add_folder_button)
        form.addRow("Photos:", photos_row)
        mode_row = QHBoxLayout()
        mode_row.addWidget(self.mask_folder_radio)
        mode_row.addWidget(self.mask_file_radio)
        mode_row.addStretch(1)
        form.addRow("Masks:", mode_row)
        masks_row = QHBoxLayout()
        masks_row.addWidget(self.masks_edit, 1)
        masks_row.addWidget(masks_browse)
        form.addRow("", masks_row)
        out_row = QHBoxLayout()
        out_row.addWidget(self.output_edit, 1)
        out_row.addWidget(output_browse)
        form.addRow("Output folder:", out_row)
        form.addRow("Batch name:", self.name_edit)
        form.addRow("Model:", self.model_box)
        form.addRow("HD strategy:", self.hd_box)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.unpaired)
        layout.addWidget(self.buttons)

        for edit in (self.masks_edit, self.output_edit):
            edit.textChanged.connect(self._schedule_rescan)
        self.mask_file_radio.toggled.connect(self._mask_mode_changed)
        self.name_edit.textChanged.connect(self._update_ok)
        self._show_inputs()
        if self.paths:
            self.fill_defaults()

    # -- results -------------------------------------------------------------------------

    def result_batch(self) -> tuple[BatchPlan, JobSettings, str] | None:
        """(plan, JobSettings, name) for the scheduler, or None without a plan to run."""
        if self.plan is None or not self.plan.jobs:
            return None
        job_settings = JobSettings(
            model=str(self.model_box.currentData()),
            device=self.settings.device,
            hd=HDConfig(strategy=HDStrategy(self.hd_box.currentText())),
            quality=self.settings.jpeg_quality,
        )
        name = self.name_edit.text().strip() or self.paths[0].name
        return self.plan, job_settings, name

    def done(self, result: int) -> None:
        """Close; a rescan still pending would only run after the dialog is gone."""
        self._timer.stop()
        super().done(result)

    # -- scanning ------------------------------------------------------------------------

    @async_slot
    async def fill_defaults(self) -> None:
        """Guess the mask and output folders next to the photos, then plan."""
        loop = asyncio.get_running_loop()
        guess = await loop.run_in_executor(None, guess_defaults, self.paths)
        if not Shiboken.isValid(self):
            return
        if guess.masks is not None and not self.masks_edit.text():
            self.masks_edit.setText(str(guess.masks))
        if not self.output_edit.text():
            self.output_edit.setText(str(guess.output))
        if not self.name_edit.text():
            self.name_edit.setText(guess.name)
        self._timer.stop()  # the texts set above asked for a rescan: do it now, once
        self.rescan()

    def _schedule_rescan(self, *_: object) -> None:
        self._generation += 1  # whatever is in flight is now stale
        self.plan = None
        self._update_ok()
        self._timer.start()

    @async_slot
    async def rescan(self) -> None:
        """Plan again in an executor thread and show how many photos pair with masks."""
        self._timer.stop()  # this scan supersedes a pending one
        self._generation += 1
        generation = self._generation
        masks, out = self.masks_edit.text().strip(), self.output_edit.text().strip()
        self.plan = None
        self.unpaired.clear()
        self._update_ok()
        if not self.paths:
            self.summary.setText("Choose a folder of photos.")
            return
        if not masks or not out:
            self.summary.setText("Choose the masks and an output folder.")
            return
        self.summary.setText("Looking for photos and masks…")
        loop = asyncio.get_running_loop()
        try:
            plan = await loop.run_in_executor(
                None, plan_dropped, self.paths, Path(masks).expanduser(), Path(out).expanduser()
            )
        except PlanError as exc:
            plan, error = None, str(exc)
        if not Shiboken.isValid(self) or generation != self._generation:
            return  # closed, or the inputs changed while this scan ran
        if plan is None:
            self.summary.setText(f"Cannot plan this batch: {error}")
            return
        self.plan = plan
        self._show_plan(plan)
        self._update_ok()

    def _show_plan(self, plan: BatchPlan) -> None:
        parts = [f"{len(plan.jobs)} photo(s) pair with a mask"]
        if plan.skipped:
            parts.append(f"{len(plan.skipped)} will be skipped (listed below)")
        if plan.already_done:
            parts.append(f"{len(plan.already_done)} already have an output and are left alone")
        self.summary.setText("; ".join(parts) + ".")
        for skipped in plan.skipped:
            self.unpaired.addItem(f"{skipped.image.name}: {skipped.reason}")

    def _update_ok(self, *_: object) -> None:
        ready = self.plan is not None and bool(self.plan.jobs)
        self.ok_button.setEnabled(ready and bool(self.name_edit.text().strip()))

    # -- choosing paths ------------------------------------------------------------------

    def _show_inputs(self) -> None:
        folders = sum(1 for p in self.paths if p.suffix.lower() not in IMAGE_EXTENSIONS)
        files = len(self.paths) - folders
        names = ", ".join(p.name for p in self.paths[:3]) + ("…" if len(self.paths) > 3 else "")
        counts = [f"{folders} folder(s)"] if folders else []
        counts += [f"{files} photo(s)"] if files else []
        self.inputs.setText(f"{' and '.join(counts)}: {names}" if self.paths else "none yet")

    def _set_input(self, folder: str) -> None:
        self.paths = [Path(folder)]
        self._show_inputs()
        self.fill_defaults()

    def _mask_mode_changed(self, single: bool) -> None:
        self.masks_edit.setPlaceholderText(
            "one mask image used for every photo" if single else "folder with a mask per photo"
        )
        self.masks_edit.clear()

    def _browse_masks(self) -> None:
        if self.mask_file_radio.isChecked():
            self._browse(QFileDialog.FileMode.ExistingFile, self.masks_edit.setText)
        else:
            self._browse_folder(self.masks_edit.setText)

    def _browse_folder(self, done: Any) -> None:
        self._browse(QFileDialog.FileMode.Directory, done)

    def _browse(self, mode: QFileDialog.FileMode, done: Any) -> None:
        """A file dialog opened with open() (never exec()); `done` gets the chosen path."""
        chooser = QFileDialog(self)
        chooser.setFileMode(mode)
        chooser.fileSelected.connect(done)
        chooser.finished.connect(chooser.deleteLater)
        chooser.open()
