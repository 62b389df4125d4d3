"""Batch planning: mask pairing by stem, output paths, skip and resume rules, usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lama_desktop.engine.plan import BatchPlan, PlanError, PlannedJob, Skipped, plan_batch


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    for name in ("a.jpg", "b.PNG", "c.webp", "notes.txt", ".hidden.jpg"):
        touch(images / name)
    touch(masks / "a.png")
    touch(masks / "B.png")  # matched to b.PNG ignoring case
    return images, masks, out


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_pairs_by_stem_and_reports_unmatched(folders: tuple[Path, Path, Path]) -> None:
    images, masks, out = folders
    plan = plan_batch(images, masks, out)
    assert [(j.image.name, j.mask.name, j.output) for j in plan.jobs] == [
        ("a.jpg", "a.png", out / "a.jpg"),
        ("b.PNG", "B.png", out / "b.PNG"),
    ]
    assert plan.skipped == [Skipped(images / "c.webp", f"no mask named c.* in {masks}")]
    assert plan.already_done == []


def test_one_mask_file_serves_every_image(folders: tuple[Path, Path, Path]) -> None:
    images, masks, out = folders
    plan = plan_batch(images, masks / "a.png", out)
    assert names([j.image for j in plan.jobs]) == ["a.jpg", "b.PNG", "c.webp"]
    assert {j.mask for j in plan.jobs} == {masks / "a.png"}
    assert plan.skipped == []


def test_single_image_file(folders: tuple[Path, Path, Path]) -> None:
    images, masks, out = folders
    plan = plan_batch(images / "a.jpg", masks, out)
    assert [(j.image, j.output) for j in plan.jobs] == [(images / "a.jpg", out / "a.jpg")]


def test_single_image_into_its_own_folder_is_refused(folders: tuple[Path, Path, Path]) -> None:
    images, masks, _out = folders
    with pytest.raises(PlanError, match="own folder"):
        plan_batch(images / "a.jpg", masks, images, output_format="png")


def test_output_format_changes_extension(folders: tuple[Path, Path, Path]) -> None:
    images, masks, out = folders
    plan = plan_batch(images, masks, out, output_format="webp")
    assert names([j.output for j in plan.jobs]) == ["a.webp", "b.webp"]
    with pytest.raises(PlanError, match="gif"):
        plan_batch(images, masks, out, output_format="gif")


def test_lossless_mask_preferred_when_stems_clash(folders: tuple[Path, Path, Path]) -> None:
    images, masks, out = folders
    touch(masks / "c.jpg")
    touch(masks / "c.png")
    job = next(j for j in plan_batch(images, masks, out).jobs if j.image.name == "c.webp")
    assert job.mask.name == "c.png"


def test_resume_skips_existing_outputs_unless_overwrite(folders: tuple[Path, Path, Path]) -> None:
    images, masks, out = folders
    touch(out / "a.jpg")
    plan = plan_batch(images, masks, out)
    assert names([j.image for j in plan.already_done]) == ["a.jpg"]
    assert names([j.image for j in plan.jobs]) == ["b.PNG"]
    assert plan.overwrite is False
    again = plan_batch(images, masks, out, overwrite=True)
    assert names([j.image for j in again.jobs]) == ["a.jpg", "b.PNG"]
    assert again.already_done == []
    assert again.overwrite is True


def test_recursive_keeps_structure_and_matches_subfolder_masks(tmp_path: Path) -> None:
    images, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "in" / "cleaned"
    touch(images / "top.jpg")
    touch(images / "trip" / "day1.jpg")
    touch(images / "trip" / "day2.jpg")
    touch(images / ".cache" / "x.jpg")
    touch(masks / "trip" / "day1.png")
    touch(masks / "day2.png")  # a top-level mask serves a photo in any subfolder
    touch(masks / "top.png")
    touch(out / "old.jpg")  # earlier results inside IMAGES are not read as photos
    plan = plan_batch(images, masks, out, recursive=True)
    assert [
        (j.image.relative_to(images), j.mask.relative_to(masks), j.output) for j in plan.jobs
    ] == [
        (Path("top.jpg"), Path("top.png"), out / "top.jpg"),
        (Path("trip/day1.jpg"), Path("trip/day1.png"), out / "trip" / "day1.jpg"),
        (Path("trip/day2.jpg"), Path("day2.png"), out / "trip" / "day2.jpg"),
    ]
    assert plan.skipped == []
    flat = plan_batch(images, masks, out)
    assert names([j.image for j in flat.jobs]) == ["top.jpg"]


def test_masks_inside_images_folder_are_not_photos(tmp_path: Path) -> None:
    images = tmp_path / "in"
    touch(images / "a.jpg")
    touch(images / "masks" / "a.png")
    plan = plan_batch(images, images / "masks", tmp_path / "out", recursive=True)
    assert names([j.image for j in plan.jobs]) == ["a.jpg"]


def test_never_plans_output_over_an_input(folders: tuple[Path, Path, Path]) -> None:
    images, masks, _ = folders
    with pytest.raises(PlanError, match="replace your photos"):
        plan_batch(images, masks, images)
    with pytest.raises(PlanError, match="replace your masks"):
        plan_batch(images, masks, masks)
    with pytest.raises(PlanError, match="IMAGES folder"):
        plan_batch(images, images, masks)
    with pytest.raises(PlanError, match="own folder"):  # its output would be itself
        plan_batch(images / "a.jpg", masks, images)


def test_two_photos_claiming_one_output(tmp_path: Path) -> None:
    images, masks = tmp_path / "in", tmp_path / "masks"
    touch(images / "a.jpg")
    touch(images / "a.png")
    touch(masks / "a.png")
    plan = plan_batch(images, masks, tmp_path / "out", output_format="png")
    assert len(plan.jobs) == 1
    assert len(plan.skipped) == 1
    assert "already writes" in plan.skipped[0].reason


@pytest.mark.parametrize(
    ("images", "masks", "out", "message"),
    [
        ("missing", "masks", "out", "IMAGES not found"),
        ("images", "missing", "out", "--masks not found"),
        ("images", "masks", "images/a.jpg", "must be a folder"),
        ("empty", "masks", "out", "no images"),
    ],
)
def test_usage_errors(
    folders: tuple[Path, Path, Path], images: str, masks: str, out: str, message: str
) -> None:
    root = folders[0].parent
    (root / "empty").mkdir()
    with pytest.raises(PlanError, match=message):
        plan_batch(root / images, root / masks, root / out)


def test_planning_touches_nothing(folders: tuple[Path, Path, Path]) -> None:
    images, masks, out = folders
    plan = plan_batch(images, masks, out)
    assert isinstance(plan, BatchPlan)
    assert not out.exists()


def test_a_folder_named_like_a_mask_is_reported_as_a_folder(tmp_path: Path) -> None:
    images, masks = tmp_path / "in", tmp_path / "masks"
    touch(images / "a.jpg")
    touch(images / "b.jpg")
    touch(images / "sub" / "c.jpg")
    (masks / "A.png").mkdir(parents=True)  # matched ignoring case, like a mask file
    (masks / "sub" / "c.png").mkdir(parents=True)
    touch(masks / "b.png").parent.joinpath("b.tif").mkdir()  # a real mask file wins
    plan = plan_batch(images, masks, tmp_path / "out", recursive=True)
    assert [j.mask for j in plan.jobs] == [masks / "b.png"]
    assert plan.skipped == [
        Skipped(images / "a.jpg", f"mask {masks / 'A.png'} is a folder, not an image"),
        Skipped(
            images / "sub" / "c.jpg", f"mask {masks / 'sub' / 'c.png'} is a folder, not an image"
        ),
    ]


def test_symlinks_are_followed_when_they_could_overwrite_an_input(tmp_path: Path) -> None:
    images, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    touch(images / "a.jpg")
    touch(images / "b.jpg")
    touch(masks / "a.png")
    touch(masks / "b.png")
    touch(masks / "c.png")
    touch(out / "kept.jpg")
    (out / "a.jpg").symlink_to(images / "b.jpg")  # writing a's result would replace photo b
    (images / "c.jpg").symlink_to(out / "kept.jpg")  # a "photo" that lives in the output folder
    plan = plan_batch(images, masks, out, overwrite=True)
    assert [j.image.name for j in plan.jobs] == ["b.jpg"]
    assert plan.skipped == [
        Skipped(images / "a.jpg", f"its output {out / 'a.jpg'} would replace an input file")
    ]


def test_a_planned_job_reads_as_paths_and_keeps_strings() -> None:
    job = PlannedJob(Path("/in/a.jpg"), "/masks/a.png", Path("/out") / "a.jpg")
    assert job.image == Path("/in/a.jpg") and job.mask.name == "a.png"
    assert job.output.parent == Path("/out")
    assert job.strings() == ("/in/a.jpg", "/masks/a.png", "/out/a.jpg")
    assert job == PlannedJob("/in/a.jpg", Path("/masks/a.png"), "/out/a.jpg")
    assert len({job, PlannedJob("/in/a.jpg", "/masks/a.png", "/out/a.jpg")}) == 1
    assert "image=PosixPath('/in/a.jpg')" in repr(job) or "WindowsPath" in repr(job)
