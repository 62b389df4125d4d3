"""`lama-desktop batch` end to end in this process: exit codes, resume, summaries, progress."""

from __future__ import annotations

import io
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lama_desktop.batch_cli import OnOutcome, ShouldStop
from lama_desktop.cli import main
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import BatchPlan, JobOutcome


def save(path: Path, pixels: np.ndarray, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def photo(seed: int = 0) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(60, 120, (48, 64, 3), dtype=np.uint8)
    pixels[12:28, 20:44] = (255, 0, 255)
    return pixels


def mask() -> np.ndarray:
    m = np.zeros((48, 64), np.uint8)
    m[10:30, 18:46] = 255
    return m


@pytest.fixture
def batch(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two good photos, one broken, one without a mask."""
    images, masks, out = tmp_path / "photos", tmp_path / "masks", tmp_path / "out"
    save(images / "one.png", photo(1))
    save(images / "two.jpg", photo(2), "JPEG")
    (images / "three.png").write_bytes(b"")  # zero bytes
    save(images / "lonely.png", photo(4))
    for name in ("one", "two", "three"):
        save(masks / f"{name}.png", mask())
    return images, masks, out


CLUSTER_FLAGS = {"--local-workers", "--node", "--pair"}


def cli(*args: object) -> int:
    """Run `lama-desktop batch`; in this process unless the test asks for the cluster.

    The default route (scheduler + worker processes) is covered end to end by the samples,
    interrupt and LaMa tests; here the bad-input rules are checked without the start-up cost.
    """
    argv = ["batch", *(str(a) for a in args)]
    if not CLUSTER_FLAGS & set(argv):
        argv.append("--in-process")
    return main(argv)


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_good_batch_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    save(images / "a.png", photo())
    save(masks / "a.png", mask())
    assert cli(images, "--masks", masks, "--out", out) == 0
    result = load(out / "a.png")
    np.testing.assert_array_equal(result[mask() == 0], photo()[mask() == 0])
    assert not (result[12:28, 20:44] == (255, 0, 255)).all(axis=2).any()
    captured = capsys.readouterr()
    assert "1 done" in captured.out
    assert "[1/1] done" in captured.err  # plain progress lines: not a terminal


def test_bad_file_fails_alone_with_exit_1(
    batch: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks, out = batch
    before = contents(images)
    assert cli(images, "--masks", masks, "--out", out) == 1
    assert sorted(p.name for p in out.iterdir()) == ["one.png", "two.jpg"]
    assert contents(images) == before
    captured = capsys.readouterr()
    assert "2 done, 1 failed, 1 skipped" in captured.out
    failed = captured.out.split("Failed:")[1].split("Skipped:")[0]
    assert f"  {images / 'three.png'}: the file is empty" in failed  # path named once
    assert "lonely.png: no mask named lonely.*" in captured.out
    assert "skipped  " in captured.err and "lonely.png" in captured.err


def test_json_summary(batch: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    images, masks, out = batch
    assert cli(images, "--masks", masks, "--out", out, "--json") == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"] == {
        "done": 2, "failed": 1, "skipped": 1, "exists": 0, "cancelled": 0, "total": 4,
    }  # fmt: skip
    files = {Path(f["image"]).name: f for f in summary["files"]}
    assert files["three.png"]["status"] == "failed"
    assert "empty" in files["three.png"]["reason"]
    assert files["lonely.png"]["status"] == "skipped"
    assert files["one.png"]["output"] == str(out / "one.png")
    assert files["one.png"]["seconds"] >= 0
    assert summary["seconds"] >= 0
    assert summary["settings"]["model"] == "opencv-ns"


def test_resume_skips_existing_outputs(
    batch: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks, out = batch
    (images / "three.png").unlink()
    assert cli(images, "--masks", masks, "--out", out) == 0
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "one.png").unlink()
    capsys.readouterr()
    assert cli(images, "--masks", masks, "--out", out, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    status = {Path(f["image"]).name: f["status"] for f in summary["files"]}
    assert status == {"one.png": "done", "two.jpg": "exists", "lonely.png": "skipped"}
    assert (out / "two.jpg").stat().st_mtime_ns == first["two.jpg"]
    assert cli(images, "--masks", masks, "--out", out, "--overwrite", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["done"] == 2


def test_auto_model_warns_once_and_uses_opencv(
    batch: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks, out = batch
    cli(images / "one.png", "--masks", masks, "--out", out)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "OpenCV" in warnings[0] and "lama-desktop models download lama" in warnings[0]


@pytest.mark.parametrize(
    "args",
    [
        ["--masks", "{masks}"],  # no --out
        ["--masks", "{masks}", "--out", "{out}", "--format", "gif"],
        ["--masks", "{masks}", "--out", "{out}", "--hd-strategy", "sideways"],
        ["--masks", "{masks}", "--out", "{out}", "--model", "no-such-model"],
        ["--masks", "{masks}", "--out", "{images}"],  # would replace the photos
        ["--masks", "{out}/missing", "--out", "{out}"],
        ["--masks", "{masks}", "--out", "{out}", "--max-pixels", "0"],
    ],
)
def test_usage_errors_exit_2(
    batch: tuple[Path, Path, Path], args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks, out = batch
    filled = [a.format(images=images, masks=masks, out=out) for a in args]
    assert cli(images, *filled) == 2
    assert capsys.readouterr().err.strip()
    assert not out.exists()


def test_missing_images_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path / "nowhere", "--masks", tmp_path, "--out", tmp_path / "o") == 2
    assert "IMAGES not found" in capsys.readouterr().err


def test_model_that_cannot_load_fails_every_job(
    batch: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks, out = batch
    assert cli(images, "--masks", masks, "--out", out, "--model", "lama", "--json") == 1
    summary = json.loads(capsys.readouterr().out)
    failed = [f for f in summary["files"] if f["status"] == "failed"]
    assert len(failed) == 3
    assert all("models download lama" in f["reason"] for f in failed)


def test_format_and_recursive(tmp_path: Path) -> None:
    images, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    save(images / "a.png", photo())
    save(images / "trip" / "b.jpg", photo(3), "JPEG")
    save(masks / "mask.png", mask())
    assert (
        cli(images, "--masks", masks / "mask.png", "--out", out, "--recursive", "--format", "webp")
        == 0
    )
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.webp")) == ["a.webp", "trip/b.webp"]


def test_tty_shows_a_progress_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    images, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    for i in range(3):
        save(images / f"p{i}.png", photo(i))
    save(masks / "m.png", mask())
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli(images, "--masks", masks / "m.png", "--out", out) == 0
    shown = terminal.getvalue()
    assert "3/3" in shown and "photo" in shown and "<" in shown  # tqdm: count, unit, ETA
    assert "[1/3]" not in shown


def test_executor_is_swappable(
    batch: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from lama_desktop import batch_cli
    from lama_desktop.cli import build_parser

    images, masks, out = batch
    seen: list[tuple[int, str]] = []

    def executor(
        plan: BatchPlan, settings: JobSettings, on_outcome: OnOutcome, should_stop: ShouldStop
    ) -> list[JobOutcome]:
        seen.append((len(plan.jobs), settings.model))
        outcomes = [JobOutcome(j.image, j.output, "done", node="elsewhere") for j in plan.jobs]
        for outcome in outcomes:
            on_outcome(outcome)
        return outcomes

    args = build_parser().parse_args(
        ["batch", str(images), "--masks", str(masks), "--out", str(out), "--model", "cv2"]
    )
    assert batch_cli.run(args, executor=executor) == 0
    assert seen == [(3, "opencv-ns")]
    assert "3 done" in capsys.readouterr().out


def test_cluster_options_use_the_cluster_route(
    batch: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images, masks, out = batch
    calls: list[tuple[object, ...]] = []

    def run_plan(
        plan: BatchPlan,
        settings: JobSettings,
        local_workers: int,
        nodes: list[str],
        on_outcome: OnOutcome,
        should_stop: ShouldStop,
        *,
        pair: list[str],
    ) -> list[JobOutcome]:
        calls.append((local_workers, nodes, pair, should_stop()))
        return []

    fake = types.ModuleType("lama_desktop.cluster.batch_run")
    fake.run_plan = run_plan  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lama_desktop.cluster.batch_run", fake)
    # The fake runs nothing; jobs it never reported count as cancelled, which is not a success.
    from lama_desktop.cluster.keys import PairingLink

    key = "0" * 40  # any 40 Z85 characters: the links are checked, the fake connects nowhere
    n1 = PairingLink("n1", 7890, key).format()
    n2 = PairingLink("n2", 7890, key, "ABCD2345").format()
    cluster = ["--local-workers", "2", "--node", n1, "--pair", n2]
    assert cli(images, "--masks", masks, "--out", out, *cluster) == 1
    assert calls == [(2, [n1], [n2], False)]
    assert "3 cancelled" in capsys.readouterr().out  # the fake ran nothing; nothing was lost


def test_default_route_is_the_cluster_and_in_process_excludes_cluster_options(
    batch: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from lama_desktop import batch_cli
    from lama_desktop.cli import build_parser

    images, masks, out = batch
    base = ["batch", str(images), "--masks", str(masks), "--out", str(out)]
    default = batch_cli.choose_executor(build_parser().parse_args(base))
    assert default is not batch_cli.run_in_process
    in_process = batch_cli.choose_executor(build_parser().parse_args([*base, "--in-process"]))
    assert in_process is batch_cli.run_in_process
    assert main([*base, "--in-process", "--local-workers", "1"]) == 2
    assert "--in-process" in capsys.readouterr().err


def test_cluster_options_without_cluster_exit_2(
    batch: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images, masks, out = batch
    monkeypatch.setitem(sys.modules, "lama_desktop.cluster.batch_run", None)
    assert cli(images, "--masks", masks, "--out", out, "--local-workers", "2") == 2
    assert "cluster" in capsys.readouterr().err


def test_no_local_workers_and_no_nodes_is_a_usage_error(
    batch: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks, out = batch
    assert cli(images, "--masks", masks, "--out", out, "--local-workers", "0") == 2
    assert "--node" in capsys.readouterr().err


def test_non_ascii_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, masks, out = tmp_path / "Фото été", tmp_path / "マスク", tmp_path / "résultats 結果"
    save(images / "café ☕.png", photo())
    save(masks / "café ☕.png", mask())
    assert cli(images, "--masks", masks, "--out", out, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"][0]["output"] == str(out / "café ☕.png")
    assert load(out / "café ☕.png").shape == (48, 64, 3)


def test_pixel_limit_and_mask_size_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    save(images / "a.png", photo())
    save(masks / "a.png", mask()[::2, ::2])  # half-size mask
    assert cli(images, "--masks", masks, "--out", out, "--json") == 1
    reason = json.loads(capsys.readouterr().out)["files"][0]["reason"]
    assert "32x24" in reason and "64x48" in reason and "--resize-mask" in reason
    assert cli(images, "--masks", masks, "--out", out, "--resize-mask", "--max-pixels", "3000") == 1
    assert "over the limit" in capsys.readouterr().out
    assert not out.exists() or list(out.iterdir()) == []
    assert cli(images, "--masks", masks, "--out", out, "--resize-mask") == 0
    result = load(out / "a.png")
    np.testing.assert_array_equal(result[mask() == 0], photo()[mask() == 0])
