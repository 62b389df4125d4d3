"""Model registry, abstract base, device resolution and the model holder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from lama_desktop.engine import base
from lama_desktop.engine.base import (
    EngineError,
    InpaintModel,
    ModelHolder,
    create_model,
    get_model_class,
    model_names,
    resolve_auto_model,
    resolve_device,
)
from lama_desktop.engine.modelstore import ModelStore


def test_builtin_models_are_registered() -> None:
    names = model_names()
    assert {"lama", "opencv-ns", "opencv-telea"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("alias", ["cv2", "opencv", "OpenCV-NS", " opencv-ns "])
def test_aliases(alias: str) -> None:
    assert get_model_class(alias).name == "opencv-ns"


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(EngineError, match=r"Unknown model 'sdxl'.*lama.*opencv-ns.*opencv-telea"):
        create_model("sdxl")


def test_abstract_methods_are_enforced() -> None:
    class Incomplete(InpaintModel):
        name: ClassVar[str] = "incomplete"
        title: ClassVar[str] = "Incomplete"
        needs_download: ClassVar[bool] = False
        devices: ClassVar[tuple[str, ...]] = ("cpu",)

        def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
            return image

    with pytest.raises(TypeError, match="memory_estimate"):
        Incomplete()  # type: ignore[abstract]


def test_register_refuses_a_second_class_under_one_name() -> None:
    class Impostor(InpaintModel):
        name: ClassVar[str] = "opencv-ns"

        def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
            return image

        @classmethod
        def memory_estimate(cls, height: int, width: int) -> int:
            return 0

    model_names()  # make sure the real one is registered first
    with pytest.raises(TypeError, match="already registered"):
        base.register(Impostor)


def test_cpu_and_opencv_never_import_torch() -> None:
    code = (
        "import sys, numpy as np;"
        "from lama_desktop.engine.base import create_model, resolve_device, model_names;"
        "assert resolve_device('cpu') == 'cpu'; model_names();"
        "m = create_model('opencv-telea', device='auto');"
        "m.inpaint(np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 255, np.uint8));"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_auto_device_on_a_cpu_only_machine() -> None:
    assert resolve_device("auto") == "cpu"


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_missing_accelerator_is_a_clear_error(device: str) -> None:
    with pytest.raises(EngineError, match=r"not available|no CUDA GPU"):
        resolve_device(device)


def test_unknown_device_name() -> None:
    with pytest.raises(EngineError, match="Unknown device 'tpu'"):
        resolve_device("tpu")


def test_device_resolution_with_two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_torch_devices", lambda: (True, 2, False))
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(EngineError, match="cuda:0 to cuda:1"):
        resolve_device("cuda:2")
    # A CPU-only model refuses a GPU it cannot use, and "auto" gives it the CPU.
    with pytest.raises(EngineError, match="supports: cpu"):
        create_model("opencv-ns", device="cuda")
    assert create_model("opencv-ns", device="auto").device == "cpu"


def test_missing_model_file_message_says_how_to_fix(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(EngineError) as err:
        create_model("lama", device="cpu", store=store)
    message = str(err.value)
    assert "https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt" in message
    assert str(store.path("lama")) in message
    assert str(tmp_path / "models") in message
    assert "lama-desktop models download lama" in message


def test_auto_model_without_lama_file(tmp_path: Path) -> None:
    name, warning = resolve_auto_model(ModelStore(tmp_path))
    assert name == "opencv-ns"
    assert warning is not None and "\n" not in warning
    assert "lama-desktop models download lama" in warning and str(tmp_path) in warning


class _Closable(InpaintModel):
    name: ClassVar[str] = "closable-test"
    title: ClassVar[str] = "Closable"
    needs_download: ClassVar[bool] = False
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    closed: ClassVar[list[str]] = []

    def __init__(self, device: str = "cpu", fail: bool = False, **options: Any) -> None:
        if fail:
            raise RuntimeError("driver exploded")
        super().__init__(device, **options)

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return image.copy()

    @classmethod
    def memory_estimate(cls, height: int, width: int) -> int:
        return height * width

    def close(self) -> None:
        self.closed.append(self.name)


def test_model_holder_switches_and_keeps_previous_on_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(base._REGISTRY, _Closable.name, _Closable)
    holder = ModelHolder()
    assert holder.current is None
    first = holder.switch("closable-test")
    assert holder.current is first
    with pytest.raises(EngineError, match="driver exploded"):
        holder.switch("closable-test", fail=True)
    assert holder.current is first and _Closable.closed == []
    with pytest.raises(EngineError, match="Unknown model"):
        holder.switch("no-such-model")
    assert holder.current is first
    second = holder.switch("opencv-telea", radius=3)
    assert holder.current is second and _Closable.closed == ["closable-test"]
    holder.close()
    assert holder.current is None


def test_builtin_specs_match_the_classes() -> None:
    for spec in base.BUILTIN_SPECS:
        assert base.spec_of(get_model_class(spec.name)) == spec
    assert [s.name for s in base.model_specs()] == model_names()


def test_specs_need_neither_cv2_nor_torch() -> None:
    code = (
        "import sys; from lama_desktop.engine.base import model_specs, get_spec;"
        "names = [s.name for s in model_specs()];"
        "assert get_spec('cv2').name == 'opencv-ns' and get_spec('lama').needs_download;"
        "print(names, [m for m in ('cv2', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['lama', 'opencv-ns', 'opencv-telea'] []"
    # Other tests may have registered plugin engines in this process: look for lama among them.
    with pytest.raises(EngineError, match=r"Known models: .*\blama\b"):
        base.get_spec("nope")
