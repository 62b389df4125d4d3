"""Batch planning: pair photos with masks, choose output paths, apply skip rules; runs nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
OUTPUT_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp"}
# When one stem has several mask files, lossless ones win: JPEG noise blurs a mask's edges.
_MASK_PREFERENCE = (".png", ".bmp", ".tif", ".tiff", ".webp", ".jpg", ".jpeg")


class PlanError(Exception):
    """The batch cannot be planned as asked (a usage error: exit code 2)."""


@dataclass(frozen=True)
class PlannedJob:
    """One photo to clean with its mask, and where the result goes."""

    image: Path
    mask: Path
    output: Path


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


def _is_hidden(path: Path, root: Path) -> bool:
    # Dot files include our own temporary outputs and macOS "._photo.jpg" resource forks.
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _scan(folder: Path, recursive: bool, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """Image files in `folder`, sorted, skipping hidden ones and anything under `exclude`."""
    return _scan_with_folders(folder, recursive, exclude)[0]


def _scan_with_folders(
    folder: Path, recursive: bool, exclude: tuple[Path, ...]
) -> tuple[list[Path], list[Path]]:
    """Like `_scan`, plus the folders named like an image file ("photo.png/")."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files, folders = [], []
    for path in candidates:
        if path.suffix.lower() not in IMAGE_EXTENSIONS or _is_hidden(path, folder):
            continue
        if exclude and any(path.resolve().is_relative_to(e) for e in exclude):
            continue
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            folders.append(path)
    return sorted(files), folders


class _MaskIndex:
    """Masks by relative folder and stem; exact stem first, then ignoring case (IOPaint: stem)."""

    def __init__(self, folder: Path, recursive: bool, exclude: tuple[Path, ...]) -> None:
        self.folder = folder
        self._exact: dict[tuple[Path, str], Path] = {}
        self._folded: dict[tuple[Path, str], Path] = {}
        rank = {ext: i for i, ext in enumerate(_MASK_PREFERENCE)}
        masks, folders = _scan_with_folders(folder, recursive, exclude)
        for path in sorted(masks, key=lambda p: (rank[p.suffix.lower()], p)):
            rel = path.parent.relative_to(folder)
            self._exact.setdefault((rel, path.stem), path)
            self._folded.setdefault((rel, path.stem.casefold()), path)
        # Folders named like a mask ("photo.png/"): reported as such, not as "no mask".
        self._folders = {
            (path.parent.relative_to(folder), path.stem.casefold()): path for path in folders
        }

    def find(self, rel: Path, stem: str) -> Path | None:
        """The mask for a photo `stem` in subfolder `rel`; falls back to the top-level folder."""
        for where in dict.fromkeys((rel, Path("."))):
            mask = self._exact.get((where, stem)) or self._folded.get((where, stem.casefold()))
            if mask is not None:
                return mask
        return None

    def folder_named_like(self, rel: Path, stem: str) -> Path | None:
        """A folder where the photo's mask would be, when no mask file was found."""
        for where in dict.fromkeys((rel, Path("."))):
            found = self._folders.get((where, stem.casefold()))
            if found is not None:
                return found
        return None


def _output_name(image: Path, output_format: str | None) -> str:
    if output_format is None:
        return image.name  # same name, same format as the photo
    return image.stem + OUTPUT_EXTENSIONS[output_format]


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
    out_real = out.resolve()
    if images.is_dir():
        if out_real == images.resolve():
            raise PlanError("--out is the IMAGES folder: results would replace your photos")
        if masks.is_dir() and masks.resolve() == images.resolve():
            raise PlanError(
                "--masks is the IMAGES folder: masks are matched by name, so keep them apart"
            )
        photos = _scan(images, recursive, exclude=(out_real, masks.resolve()))
        root = images
    else:
        photos, root = [images], images.parent
        if out_real == root.resolve():
            # An output next to its photo could replace a different photo of the same stem.
            raise PlanError("--out is the photo's own folder: choose a separate folder for results")
    if masks.is_dir() and out_real == masks.resolve():
        raise PlanError("--out is the --masks folder: results could replace your masks")
    if not photos:
        raise PlanError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in {images}")
    index = _MaskIndex(masks, recursive, (out_real,)) if masks.is_dir() else None
    inputs = {p.resolve() for p in photos}
    if index is None:
        inputs.add(masks.resolve())
    plan = BatchPlan(jobs=[], skipped=[], already_done=[], overwrite=overwrite)
    claimed: dict[Path, Path] = {}
    for photo in photos:
        rel = photo.parent.relative_to(root)
        mask = masks if index is None else index.find(rel, photo.stem)
        if mask is None:
            folder = index.folder_named_like(rel, photo.stem) if index is not None else None
            reason = f"no mask named {photo.stem}.* in {masks}"
            if folder is not None:
                reason = f"mask {folder} is a folder, not an image"
            plan.skipped.append(Skipped(photo, reason))
            continue
        output = out / rel / _output_name(photo, fmt)
        key = output.resolve()
        if key in inputs or key == mask.resolve():
            plan.skipped.append(Skipped(photo, f"its output {output} would replace an input file"))
            continue
        if key in claimed:
            plan.skipped.append(
                Skipped(photo, f"{claimed[key].name} already writes {output}; rename one of them")
            )
            continue
        claimed[key] = photo
        job = PlannedJob(image=photo, mask=mask, output=output)
        if output.exists() and not overwrite:
            plan.already_done.append(job)
        else:
            plan.jobs.append(job)
    return plan
