"""Batch planning: pair photos with masks, choose output paths, apply skip rules; runs nothing."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
OUTPUT_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp"}
# When one stem has several mask files, lossless ones win: JPEG noise blurs a mask's edges.
_MASK_PREFERENCE = (".png", ".bmp", ".tif", ".tiff", ".webp", ".jpg", ".jpeg")


class PlanError(Exception):
    """The batch cannot be planned as asked (a usage error: exit code 2)."""


class PlannedJob:
    """One photo to clean with its mask, and where the result goes.

    Held as three strings, each a Path when read: a plan of 100,000 photos held about 100 MB
    as three Paths per photo, and the app plans (and queues) them in its GUI process.
    """

    __slots__ = ("_files",)

    def __init__(self, image: str | os.PathLike[str], mask: str | os.PathLike[str],
                 output: str | os.PathLike[str]) -> None:  # fmt: skip
        self._files = (os.fspath(image), os.fspath(mask), os.fspath(output))

    @property
    def image(self) -> Path:
        return Path(self._files[0])

    @property
    def mask(self) -> Path:
        return Path(self._files[1])

    @property
    def output(self) -> Path:
        return Path(self._files[2])

    def strings(self) -> tuple[str, str, str]:
        """Image, mask and output as strings (no Path made)."""
        return self._files

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PlannedJob):
            return NotImplemented
        return (self.image, self.mask, self.output) == (other.image, other.mask, other.output)

    def __hash__(self) -> int:
        return hash((self.image, self.mask, self.output))

    def __repr__(self) -> str:
        return f"PlannedJob(image={self.image!r}, mask={self.mask!r}, output={self.output!r})"


@dataclass(frozen=True)
class Skipped:
    """A photo that will not be processed, and why (reported, never silently dropped)."""

    image: Path
    reason: str


@dataclass
class BatchPlan:
    """What a batch will do. `already_done` jobs have an output from an earlier run (resume)."""

    jobs: list[PlannedJob]
    skipped: list[Skipped]
    already_done: list[PlannedJob]
    overwrite: bool = False  # executors may replace an output only when this is set


@dataclass(frozen=True)
class JobOutcome:
    """How one photo ended: status is "done", "failed", "skipped", "exists" or "cancelled"."""

    image: Path
    output: Path | None
    status: str
    reason: str = ""
    seconds: float = 0.0
    node: str | None = None


@dataclass(frozen=True, slots=True)
class _Found:
    """A file (or folder) the scan kept: its path, its folder relative to the scanned root
    ("" at the top), its name, and where it really is (symlinks resolved); all strings."""

    path: str
    rel: str
    name: str
    real: str

    @property
    def stem(self) -> str:
        return os.path.splitext(self.name)[0]

    @property
    def suffix(self) -> str:
        return os.path.splitext(self.name)[1].lower()


def _scan(folder: Path, recursive: bool, exclude: tuple[str, ...] = ()) -> list[_Found]:
    """Image files in `folder`, sorted, skipping hidden ones and anything under `exclude`."""
    return _scan_with_folders(folder, recursive, exclude)[0]


def _scan_with_folders(
    folder: Path, recursive: bool, exclude: tuple[str, ...]
) -> tuple[list[_Found], list[_Found]]:
    """Like `_scan`, plus the folders named like an image file ("photo.png/").

    One `os.scandir` per folder: names, types and the real path of each entry come from the
    directory listing and its folder's real path, with a system call only for a symlink, so
    100,000 photos are scanned without building and resolving a Path for every file. Like
    `Path.rglob`, symlinked folders are listed but not descended into. Hidden names (and all
    below a hidden folder: our own temporary outputs, macOS "._photo.jpg") are skipped.
    """
    files: list[tuple[tuple[str, ...], _Found]] = []
    folders: list[_Found] = []
    pending = [("", os.path.realpath(folder))]
    while pending:
        rel, real = pending.pop()
        here = os.path.join(folder, rel) if rel else os.fspath(folder)
        with os.scandir(here) as entries:
            listed = list(entries)
        for entry in listed:
            name = entry.name
            if name.startswith("."):
                continue
            is_dir = _quietly(entry.is_dir)
            link = _quietly(entry.is_symlink)
            where = os.path.realpath(entry.path) if link else os.path.join(real, name)
            if any(where == e or where.startswith(e + os.sep) for e in exclude):
                continue  # the output folder inside IMAGES, say: neither read nor walked
            if recursive and is_dir and not link:
                pending.append((os.path.join(rel, name) if rel else name, where))
            if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            found = _Found(entry.path, rel, name, where)
            if _quietly(entry.is_file):
                files.append(((*rel.split(os.sep), name) if rel else (name,), found))
            elif is_dir:
                folders.append(found)
    files.sort(key=lambda item: item[0])  # the order of sorted Paths: part by part
    return [found for _, found in files], folders


def _quietly(check: Callable[[], bool]) -> bool:
    """A DirEntry type check; False for an entry that vanished or cannot be looked at."""
    try:
        return check()
    except OSError:
        return False


class _MaskIndex:
    """Masks by relative folder and stem; exact stem first, then ignoring case (IOPaint: stem)."""

    def __init__(self, folder: Path, recursive: bool, exclude: tuple[str, ...]) -> None:
        self.folder = folder
        self._exact: dict[tuple[str, str], _Found] = {}
        self._folded: dict[tuple[str, str], _Found] = {}
        rank = {ext: i for i, ext in enumerate(_MASK_PREFERENCE)}
        masks, folders = _scan_with_folders(folder, recursive, exclude)
        for mask in sorted(masks, key=lambda m: rank[m.suffix]):  # stable: then by path
            stem = mask.stem
            self._exact.setdefault((mask.rel, stem), mask)
            self._folded.setdefault((mask.rel, stem.casefold()), mask)
        # Folders named like a mask ("photo.png/"): reported as such, not as "no mask".
        self._folders = {(f.rel, f.stem.casefold()): Path(f.path) for f in folders}

    def find(self, rel: str, stem: str) -> _Found | None:
        """The mask for a photo `stem` in subfolder `rel`; falls back to the top-level folder."""
        for where in dict.fromkeys((rel, "")):
            mask = self._exact.get((where, stem)) or self._folded.get((where, stem.casefold()))
            if mask is not None:
                return mask
        return None

    def folder_named_like(self, rel: str, stem: str) -> Path | None:
        """A folder where the photo's mask would be, when no mask file was found."""
        for where in dict.fromkeys((rel, "")):
            found = self._folders.get((where, stem.casefold()))
            if found is not None:
                return found
        return None


def _output_state(output: str, real: str) -> tuple[bool, str]:
    """Whether `output` exists, and where it really is (`real`, unless it is a symlink)."""
    try:
        if not stat.S_ISLNK(os.lstat(output).st_mode):
            return True, real
    except FileNotFoundError:
        return False, real
    except OSError:
        pass
    return os.path.exists(output), os.path.realpath(output)


def _output_name(photo: _Found, output_format: str | None) -> str:
    if output_format is None:
        return photo.name  # same name, same format as the photo
    return photo.stem + OUTPUT_EXTENSIONS[output_format]


def plan_batch(
    images: Path,
    masks: Path,
    out: Path,
    *,
    recursive: bool = False,
    overwrite: bool = False,
    output_format: str | None = None,
) -> BatchPlan:
    """Plan a batch: IMAGES (file or folder), MASKS (folder matched by stem, or one file), OUT.

    Raises `PlanError` for usage errors. Never plans an output that is one of the inputs.
    """
    images, masks, out = Path(images), Path(masks), Path(out)
    if output_format is not None and output_format.lower() not in OUTPUT_EXTENSIONS:
        raise PlanError(f"unknown output format {output_format!r} (choose png, jpg or webp)")
    fmt = output_format.lower() if output_format else None
    if not images.exists():
        raise PlanError(f"IMAGES not found: {images}")
    if not masks.exists():
        raise PlanError(f"--masks not found: {masks}")
    if out.exists() and not out.is_dir():
        raise PlanError(f"--out must be a folder, but {out} is a file")
    out_real = os.path.realpath(out)
    if images.is_dir():
        if out_real == os.path.realpath(images):
            raise PlanError("--out is the IMAGES folder: results would replace your photos")
        if masks.is_dir() and os.path.realpath(masks) == os.path.realpath(images):
            raise PlanError(
                "--masks is the IMAGES folder: masks are matched by name, so keep them apart"
            )
        photos = _scan(images, recursive, exclude=(out_real, os.path.realpath(masks)))
    else:
        photos = [_Found(os.fspath(images), "", images.name, os.path.realpath(images))]
        if out_real == os.path.realpath(images.parent):
            # An output next to its photo could replace a different photo of the same stem.
            raise PlanError("--out is the photo's own folder: choose a separate folder for results")
    if masks.is_dir() and out_real == os.path.realpath(masks):
        raise PlanError("--out is the --masks folder: results could replace your masks")
    if not photos:
        raise PlanError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in {images}")
    index = _MaskIndex(masks, recursive, (out_real,)) if masks.is_dir() else None
    one_mask = None
    if index is None:
        one_mask = _Found(os.fspath(masks), "", masks.name, os.path.realpath(masks))
    inputs = {photo.real for photo in photos}
    if one_mask is not None:
        inputs.add(one_mask.real)
    plan = BatchPlan(jobs=[], skipped=[], already_done=[], overwrite=overwrite)
    claimed: dict[str, str] = {}  # real output path -> the name of the photo writing it
    out_folders: dict[str, tuple[str, str]] = {}  # rel -> the output folder, and its real path
    for photo in photos:
        rel = photo.rel
        mask = one_mask if index is None else index.find(rel, photo.stem)
        if mask is None:
            folder = index.folder_named_like(rel, photo.stem) if index is not None else None
            reason = f"no mask named {photo.stem}.* in {masks}"
            if folder is not None:
                reason = f"mask {folder} is a folder, not an image"
            plan.skipped.append(Skipped(Path(photo.path), reason))
            continue
        if rel not in out_folders:
            target = os.path.join(out, rel) if rel else os.fspath(out)
            out_folders[rel] = (target, os.path.realpath(target))
        target, target_real = out_folders[rel]
        name = _output_name(photo, fmt)
        output = os.path.join(target, name)
        exists, key = _output_state(output, os.path.join(target_real, name))
        if key in inputs or key == mask.real:
            reason = f"its output {output} would replace an input file"
            plan.skipped.append(Skipped(Path(photo.path), reason))
            continue
        if key in claimed:
            reason = f"{claimed[key]} already writes {output}; rename one of them"
            plan.skipped.append(Skipped(Path(photo.path), reason))
            continue
        claimed[key] = photo.name
        job = PlannedJob(photo.path, mask.path, output)
        if exists and not overwrite:
            plan.already_done.append(job)
        else:
            plan.jobs.append(job)
    return plan
