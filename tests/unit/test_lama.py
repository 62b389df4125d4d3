"""LaMa wrapper end to end on a generated tiny TorchScript stand-in, against IOPaint's contract."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from lama_desktop.engine.base import EngineError, ModelHolder, create_model, resolve_auto_model
from lama_desktop.engine.lama import LaMa, pad_to_modulo
from lama_desktop.engine.lama_arch import export_torchscript
from lama_desktop.engine.modelstore import ModelStore


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_torchscript(tmp_path_factory.mktemp("lama") / "tiny-lama.pt", config="tiny")


def _photo(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : height // 2, width // 3 : width // 2 + 3] = 255
    mask[-3:, :5] = 7  # any non-zero value erases, even at a padded edge
    return image, mask


def _iopaint_reference(model_file: Path, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """IOPaint 1.6's LaMa path written out step by step (helper.norm_img, pad, forward)."""
    height, width = mask.shape
    pad_h, pad_w = (-height) % 8, (-width) % 8
    image_p = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
    mask_p = np.pad(mask[:, :, None], ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
    image_n = np.transpose(image_p, (2, 0, 1)).astype("float32") / 255
    mask_n = (np.transpose(mask_p, (2, 0, 1)).astype("float32") / 255 > 0) * 1
    module = torch.jit.load(str(model_file), map_location="cpu").eval()
    with torch.no_grad():
        out = module(torch.from_numpy(image_n)[None], torch.from_numpy(mask_n)[None])
    result = np.clip(out[0].permute(1, 2, 0).numpy() * 255, 0, 255).astype("uint8")
    result = result[:height, :width]
    keep = mask == 0
    result[keep] = image[keep]
    return result


@pytest.mark.parametrize("size", [(64, 48), (61, 45), (33, 70)])
def test_matches_iopaint_contract(tiny_model_file: Path, size: tuple[int, int]) -> None:
    image, mask = _photo(*size)
    original = image.copy()
    model = create_model("lama", device="cpu", model_path=tiny_model_file)
    result = model.inpaint(image, mask)
    assert result.shape == image.shape and result.dtype == np.uint8
    np.testing.assert_array_equal(image, original)  # input untouched
    np.testing.assert_array_equal(result, _iopaint_reference(tiny_model_file, image, mask))
    outside = mask == 0
    np.testing.assert_array_equal(result[outside], image[outside])
    assert (result[mask > 0] != image[mask > 0]).any()


def test_symmetric_padding_to_multiple_of_eight() -> None:
    array = np.arange(5 * 3, dtype=np.uint8).reshape(5, 3)
    padded = pad_to_modulo(array)
    assert padded.shape == (8, 8)
    np.testing.assert_array_equal(padded[:5, :3], array)
    np.testing.assert_array_equal(padded[5, :3], array[4])  # mirrored edge, IOPaint's rule
    np.testing.assert_array_equal(padded[7, :3], array[2])
    np.testing.assert_array_equal(padded[:5, 3], array[:, 2])
    assert pad_to_modulo(np.zeros((16, 8, 3), np.uint8)).shape == (16, 8, 3)


def test_loads_from_the_model_store(
    tiny_model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMA_MODELS_DIR", str(tmp_path / "models"))
    store = ModelStore()
    assert not LaMa.is_available(store)
    assert resolve_auto_model(store)[0] == "opencv-ns"
    store.install_local("lama", tiny_model_file)
    assert LaMa.is_available(store)
    assert resolve_auto_model(store) == ("lama", None)
    model = create_model("lama", device="auto", store=store)
    assert model.device == "cpu"  # no GPU on this machine
    image, mask = _photo(40, 40)
    np.testing.assert_array_equal(
        model.inpaint(image, mask), _iopaint_reference(tiny_model_file, image, mask)
    )
    model.close()


def test_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "big-lama.pt"
    bad.write_bytes(b"PK\x03\x04 truncated archive")
    with pytest.raises(EngineError, match="damaged or not a TorchScript"):
        create_model("lama", device="cpu", model_path=bad)
    with pytest.raises(EngineError, match="does not exist"):
        create_model("lama", device="cpu", model_path=tmp_path / "absent.pt")


def test_failed_switch_to_lama_keeps_opencv(tmp_path: Path) -> None:
    holder = ModelHolder(ModelStore(tmp_path / "empty"))
    first = holder.switch("opencv-ns")
    with pytest.raises(EngineError, match="models download lama"):
        holder.switch("lama", device="cpu")
    assert holder.current is first


def test_fp16_on_cpu_falls_back_to_float32(
    tiny_model_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        model = create_model("lama", device="cpu", model_path=tiny_model_file, fp16=True)
    assert "fp16 is only used on CUDA" in caplog.text
    image, mask = _photo(24, 24)
    np.testing.assert_array_equal(
        model.inpaint(image, mask), _iopaint_reference(tiny_model_file, image, mask)
    )


def test_bad_inputs_are_refused(tiny_model_file: Path) -> None:
    with pytest.raises(EngineError, match=r"no option.*radius"):
        create_model("lama", device="cpu", model_path=tiny_model_file, radius=3)
    model = create_model("lama", device="cpu", model_path=tiny_model_file)
    image, mask = _photo(16, 16)
    with pytest.raises(EngineError, match="differs from image size"):
        model.inpaint(image, mask[:8])
    with pytest.raises(EngineError, match="uint8"):
        model.inpaint(image.astype(np.float32), mask)


def test_memory_estimate_grows_with_size() -> None:
    small, large = LaMa.memory_estimate(512, 512), LaMa.memory_estimate(1024, 1024)
    assert 200 * 2**20 < small < large
    assert LaMa.memory_estimate(511, 511) == small  # padded to 512 first


def test_fp16_failure_falls_back_to_float32(
    tiny_model_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = create_model("lama", device="cpu", model_path=tiny_model_file)
    scripted = model._model

    def half_intolerant(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # What cuFFT does with a half-precision FFT of a size that is not a power of two.
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("cuFFT only supports dimensions whose sizes are powers of two")
        return scripted(image, mask)

    model._model = half_intolerant
    model.fp16 = True  # as if on CUDA
    image, mask = _photo(40, 24)
    with caplog.at_level(logging.WARNING):
        result = model.inpaint(image, mask)
    assert model.fp16 is False and "using float32 from now on" in caplog.text
    np.testing.assert_array_equal(result, _iopaint_reference(tiny_model_file, image, mask))


@pytest.mark.parametrize("strategy", ["original", "resize", "crop"])
def test_hd_strategies_with_lama(tiny_model_file: Path, strategy: str) -> None:
    from lama_desktop.engine.hd import HDConfig, HDStrategy, run_with_strategy

    image, mask = _photo(90, 130, seed=2)
    cfg = HDConfig(HDStrategy(strategy), crop_margin=8, crop_trigger_size=64, resize_limit=72)
    model = create_model("lama", device="cpu", model_path=tiny_model_file)
    result = run_with_strategy(model, image, mask, cfg)
    np.testing.assert_array_equal(result[mask == 0], image[mask == 0])
    assert (result[mask > 0] != image[mask > 0]).mean() > 0.5


def test_a_traced_stand_in_loads_and_runs_at_other_sizes(tmp_path: Path) -> None:
    # big-lama.pt is a traced TorchScript file, not a scripted one; traced at 64x64 here.
    traced = export_torchscript(tmp_path / "traced.pt", config="tiny", method="trace")
    model = create_model("lama", device="cpu", model_path=traced)
    assert isinstance(model, LaMa)
    image, mask = _photo(61, 93)  # padded to 64x96: not the traced size
    result = model.inpaint(image, mask)
    np.testing.assert_array_equal(result, _iopaint_reference(traced, image, mask))
    assert (result[mask > 0] != image[mask > 0]).any()
    with pytest.raises(ValueError, match="unknown export method"):
        export_torchscript(tmp_path / "x.pt", method="onnx")
