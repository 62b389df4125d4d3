"""LaMa: the TorchScript big-lama.pt that IOPaint uses, with IOPaint's numeric contract.

torch is imported inside functions only, so importing this module (which registers the
model) stays cheap and never loads torch into a process that only lists models.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import psutil

from lama_desktop.engine.base import (
    EngineError,
    InpaintModel,
    check_inputs,
    missing_file_message,
    register,
)
from lama_desktop.engine.modelstore import ModelStore

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PAD_MOD = 8
_WEIGHTS_BYTES = 210 * 1024 * 1024  # big-lama.pt is 196 MiB on disk, about that in memory
# Peak activation bytes per input pixel on CPU in float32: the 51 M-parameter stand-in's peak
# RSS over its post-load RSS was 1,070 B/px at 512^2, 1,030 at 1024^2 and 860 at 2048^2
# (benchmarks/bench_engine.py); 1,300 leaves about 20 % headroom.
_BYTES_PER_PIXEL = 1300


def torch_devices() -> tuple[bool, int, bool]:
    """(torch importable, number of CUDA devices, MPS available) for device resolution."""
    try:
        import torch
    except ImportError:
        return False, 0, False
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return True, cuda, mps


def visible_devices() -> list[tuple[str, str, str, int]]:
    """(name, title, NVML-style UUID, memory bytes) of each device torch sees here: "cpu",
    then "cuda:N" as numbered under CUDA_VISIBLE_DEVICES, then "mps"."""
    found = [("cpu", "", "", 0)]
    try:
        import torch
    except ImportError:
        return found
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            uuid = str(getattr(props, "uuid", "") or "")
            if uuid and not uuid.startswith("GPU-"):
                uuid = f"GPU-{uuid}"  # torch prints the bare UUID, NVML prefixes it
            found.append((f"cuda:{index}", str(props.name), uuid, int(props.total_memory)))
    if torch_devices()[2]:
        found.append(("mps", "", "", 0))
    return found


def pad_to_modulo(array: np.ndarray, mod: int = PAD_MOD) -> np.ndarray:
    """Pad height and width up to a multiple of `mod`, mirroring the edge (IOPaint's rule)."""
    height, width = array.shape[:2]
    pad_h = -height % mod
    pad_w = -width % mod
    pads = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pads, mode="symmetric")


def default_threads() -> int:
    """Physical cores: hyper-threads only slow convolutions down."""
    return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)


@register
class LaMa(InpaintModel):
    """Big-LaMa (Fourier convolutions); options: model_path, fp16 (CUDA only), threads."""

    name: ClassVar[str] = "lama"
    title: ClassVar[str] = "LaMa"
    needs_download: ClassVar[bool] = True
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda", "mps")

    def __init__(
        self,
        device: str = "cpu",
        store: ModelStore | None = None,
        model_path: str | Path | None = None,
        fp16: bool = False,
        threads: int | None = None,
        **options: Any,
    ) -> None:
        if options:
            raise EngineError(f"Model 'lama' has no option(s): {', '.join(sorted(options))}.")
        import torch

        super().__init__(device)
        path = Path(model_path).expanduser() if model_path else (store or ModelStore()).path("lama")
        if not path.is_file():
            if model_path:
                raise EngineError(f"LaMa model file {path} does not exist.")
            raise EngineError(missing_file_message(store, "lama"))
        if fp16 and not device.startswith("cuda"):
            log.warning("fp16 is only used on CUDA; running LaMa in float32 on %s", device)
            fp16 = False
        if device == "cpu":
            torch.set_num_threads(threads or default_threads())
        self.path = path
        # fp16 runs under autocast, not model.half(): weights stay float32, so falling back
        # to float32 (see _run) costs nothing.
        self.fp16 = fp16
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # torch raises RuntimeError or ValueError for a bad archive
            raise EngineError(
                f"Could not load the LaMa model file {path}: it is damaged or not a TorchScript "
                f"model ({exc}). Delete it and run `lama-desktop models download lama`."
            ) from exc
        self._model: Any = module.eval().to(torch.device(device))
        if device == "mps" and not self._works_here():
            log.warning("LaMa does not run on Apple MPS with this PyTorch; using the CPU")
            self.device = "cpu"
            self._model = self._model.to(torch.device("cpu"))

    def _works_here(self) -> bool:
        """Run one tiny image through the model (FFT ops are missing on some MPS builds)."""
        try:
            self._forward(np.zeros((16, 16, 3), np.uint8), np.full((16, 16), 255, np.uint8))
        except (RuntimeError, NotImplementedError):
            return False
        return True

    def _to_tensor(self, array: np.ndarray) -> torch.Tensor:
        """HxWxC (or HxW) uint8 -> 1xCxHxW float in [0,1] on the model's device (norm_img)."""
        import torch

        if array.ndim == 2:
            array = array[:, :, np.newaxis]
        chw = np.transpose(array, (2, 0, 1)).astype(np.float32) / 255
        return torch.from_numpy(chw).unsqueeze(0).to(self.device)

    def _run(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The model call; in fp16 mode under autocast, falling back to float32 for good if
        half precision fails (cuFFT's half-precision FFT only takes power-of-two sizes)."""
        import torch

        if self.fp16:
            try:
                with torch.autocast(self.device.split(":")[0], dtype=torch.float16):
                    return self._model(image, mask)
            except RuntimeError as exc:
                log.warning("LaMa in fp16 failed (%s); using float32 from now on", exc)
                self.fp16 = False
        return self._model(image, mask)

    def _forward(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """IOPaint's LaMa.forward on an already padded image: returns uint8 HxWx3 RGB."""
        import torch

        binary = (mask > 0).astype(np.uint8) * 255  # IOPaint: norm_img(mask) > 0
        with torch.inference_mode():
            image_t = self._to_tensor(image)
            mask_t = (self._to_tensor(binary) > 0).to(image_t.dtype)
            output = self._run(image_t, mask_t)
            result = output[0].permute(1, 2, 0).float().cpu().numpy()
        return np.clip(result * 255, 0, 255).astype(np.uint8)

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Pad to a multiple of 8, run, crop back, and restore every unmasked pixel."""
        check_inputs(image, mask)
        height, width = mask.shape
        result = self._forward(pad_to_modulo(image), pad_to_modulo(mask))[:height, :width]
        result = np.ascontiguousarray(result)
        keep = mask == 0
        result[keep] = image[keep]
        return result

    @classmethod
    def memory_estimate(cls, height: int, width: int) -> int:
        """Weights plus activations, for the padded size."""
        padded = (height + -height % PAD_MOD) * (width + -width % PAD_MOD)
        return _WEIGHTS_BYTES + _BYTES_PER_PIXEL * padded

    @classmethod
    def is_available(cls, store: ModelStore | None = None) -> bool:
        """True when big-lama.pt is in the model store."""
        return (store or ModelStore()).is_present("lama")

    def close(self) -> None:
        """Drop the TorchScript module and give cached GPU memory back."""
        self._model = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
