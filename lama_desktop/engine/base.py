"""Inpainting model base class, the model registry, device choice and the model holder."""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

if TYPE_CHECKING:
    from lama_desktop.engine.modelstore import ModelStore

# Modules whose import registers built-in models; imported on first registry use so that
# importing this module stays light (no cv2, no torch).
_BUILTIN_MODULES = ("lama_desktop.engine.opencv", "lama_desktop.engine.lama")
_ALIASES = {"cv2": "opencv-ns", "opencv": "opencv-ns"}
_REGISTRY: dict[str, type[InpaintModel]] = {}


class EngineError(Exception):
    """A problem the user can act on; str(error) is the message to show them."""


class InpaintModel(abc.ABC):
    """An inpainting model: RGB uint8 image + uint8 mask (non-zero = erase) -> RGB uint8 image."""

    name: ClassVar[str]
    title: ClassVar[str]
    needs_download: ClassVar[bool]
    devices: ClassVar[tuple[str, ...]]

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        self.device = device
        self.options = options

    @abc.abstractmethod
    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Fill the masked pixels of `image` (uint8 HxWx3 RGB); `mask` is uint8 HxW."""

    @classmethod
    @abc.abstractmethod
    def memory_estimate(cls, height: int, width: int) -> int:
        """Peak bytes one `inpaint` call on a height x width image needs (weights included)."""

    @classmethod
    def is_available(cls, store: ModelStore | None = None) -> bool:
        """True when the model can be created now (its file is present, if it needs one)."""
        return not cls.needs_download

    # Not abstract: a model holding no native memory (OpenCV) has nothing to free.
    def close(self) -> None:  # noqa: B027
        """Free the memory the model holds; the instance must not be used afterwards."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.device}>"


def check_inputs(image: np.ndarray, mask: np.ndarray) -> None:
    """Raise EngineError unless image is uint8 HxWx3 and mask is uint8 HxW of the same size."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise EngineError("Image must be a uint8 array of shape (height, width, 3).")
    if image.shape[2] != 3:
        raise EngineError(f"Image must have 3 channels (RGB), got {image.shape[2]}.")
    if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8 or mask.ndim != 2:
        raise EngineError("Mask must be a uint8 array of shape (height, width).")
    if mask.shape != image.shape[:2]:
        raise EngineError(
            f"Mask size {mask.shape[1]}x{mask.shape[0]} differs from image size "
            f"{image.shape[1]}x{image.shape[0]}."
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise EngineError("Image is empty (zero width or height).")


@dataclass(frozen=True)
class ModelSpec:
    """What a model is, readable without importing its module (so without cv2 or torch)."""

    name: str
    title: str
    needs_download: bool
    devices: tuple[str, ...]

    @property
    def label(self) -> str:
        """The one name a user sees: the title and the id the CLI and settings take."""
        return f"{self.title} ({self.name})"


# The built-in models' specs, kept here so a GUI process can list models without importing
# cv2 or torch; a test checks they match the classes.
BUILTIN_SPECS = (
    ModelSpec("lama", "LaMa", needs_download=True, devices=("cpu", "cuda", "mps")),
    ModelSpec("opencv-ns", "OpenCV Navier-Stokes", needs_download=False, devices=("cpu",)),
    ModelSpec("opencv-telea", "OpenCV Telea", needs_download=False, devices=("cpu",)),
)


def spec_of(cls: type[InpaintModel]) -> ModelSpec:
    """The spec a model class declares."""
    return ModelSpec(cls.name, cls.title, cls.needs_download, tuple(cls.devices))


def model_specs() -> list[ModelSpec]:
    """Specs of the built-in and any other registered models, sorted by name; imports nothing."""
    specs = {spec.name: spec for spec in BUILTIN_SPECS}
    specs.update({name: spec_of(cls) for name, cls in _REGISTRY.items()})
    return [specs[name] for name in sorted(specs)]


def canonical_name(name: str) -> str:
    """Lower-case name with aliases resolved ("cv2" -> "opencv-ns")."""
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def get_spec(name: str) -> ModelSpec:
    """The spec of model `name` (aliases accepted), without importing its module."""
    key = canonical_name(name)
    for spec in model_specs():
        if spec.name == key:
            return spec
    known = ", ".join(spec.name for spec in model_specs())
    raise EngineError(f"Unknown model {name!r}. Known models: {known}.")


ModelT = TypeVar("ModelT", bound=type[InpaintModel])


def register(cls: ModelT) -> ModelT:
    """Class decorator: make a model creatable by its `name`."""
    if not getattr(cls, "name", ""):
        raise TypeError(f"{cls.__qualname__} needs a non-empty `name` to be registered")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise TypeError(f"model name {cls.name!r} is already registered by {existing.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def model_names() -> list[str]:
    """Names of every registered model, built-ins included, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[InpaintModel]:
    """The model class registered under `name` (or one of its aliases such as "cv2")."""
    _load_builtins()
    key = canonical_name(name)
    try:
        return _REGISTRY[key]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise EngineError(f"Unknown model {name!r}. Known models: {known}.") from None


def _torch_devices() -> tuple[bool, int, bool]:
    """(torch importable, CUDA device count, MPS usable), asked of torch only when needed."""
    # engine.lama owns every torch import; going through it keeps torch out of this module.
    from lama_desktop.engine import lama

    return lama.torch_devices()


def resolve_device(requested: str) -> str:
    """Turn "auto", "cpu", "cuda", "cuda:N" or "mps" into a device that exists here."""
    wanted = requested.strip().lower()
    if wanted == "cpu":
        return "cpu"
    if wanted not in ("auto", "cuda", "mps") and not wanted.startswith("cuda:"):
        raise EngineError(f"Unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps.")
    has_torch, cuda_count, has_mps = _torch_devices()
    if wanted == "auto":
        if cuda_count > 0:
            return "cuda"
        return "mps" if has_mps else "cpu"
    if not has_torch:
        raise EngineError(f"Device {requested!r} needs PyTorch, which is not installed.")
    if wanted == "mps":
        if not has_mps:
            raise EngineError("Device 'mps' asked for, but Apple Metal (MPS) is not available.")
        return "mps"
    if cuda_count == 0:
        raise EngineError(
            f"Device {requested!r} asked for, but no CUDA GPU is usable (no NVIDIA driver, "
            "or a CPU-only build of PyTorch). Use --device cpu, or install the CUDA build of torch."
        )
    if wanted == "cuda":
        return "cuda"
    index_text = wanted.split(":", 1)[1]
    if not index_text.isdigit() or int(index_text) >= cuda_count:
        raise EngineError(
            f"Device {requested!r} does not exist: this machine has {cuda_count} CUDA "
            f"device(s), cuda:0 to cuda:{cuda_count - 1}."
        )
    return wanted


def _device_for(cls: type[InpaintModel], requested: str) -> str:
    """The concrete device a model runs on, never one it does not support."""
    if requested.strip().lower() == "auto":
        if cls.devices == ("cpu",):
            return "cpu"  # a CPU-only model never needs torch to decide
        device = resolve_device("auto")
        return device if device in cls.devices else "cpu"
    device = resolve_device(requested)
    if device.split(":", 1)[0] not in cls.devices:
        supported = ", ".join(cls.devices)
        raise EngineError(f"Model {cls.name!r} cannot run on {device!r}; it supports: {supported}.")
    return device


def missing_file_message(store: ModelStore | None, name: str) -> str:
    """The message for a model whose file is not on disk: where to get it and where to put it."""
    from lama_desktop.engine.modelstore import ModelStore

    store = store or ModelStore()
    spec = store.file(name)
    path = store.path(name)
    return (
        f"The {name} model file is missing: {path} does not exist. "
        f"Run `lama-desktop models download {name}`, or download {spec.url} yourself and "
        f"save it as {spec.filename} in the folder {path.parent}."
    )


def create_model(
    name: str, device: str = "auto", store: ModelStore | None = None, **options: Any
) -> InpaintModel:
    """Build the model called `name` on `device` (auto picks the best one it supports)."""
    cls = get_model_class(name)
    if cls.needs_download:
        if options.get("model_path") is None and not cls.is_available(store):
            raise EngineError(missing_file_message(store, cls.name))
        options["store"] = store
    return cls(device=_device_for(cls, device), **options)


def resolve_auto_model(store: ModelStore | None = None) -> tuple[str, str | None]:
    """The model "auto" means: LaMa if its file is here, else OpenCV and one warning line."""
    if get_model_class("lama").is_available(store):
        return "lama", None
    from lama_desktop.engine.modelstore import ModelStore

    store = store or ModelStore()
    warning = (
        f"LaMa model file not found at {store.path('lama')}; using OpenCV (opencv-ns) instead. "
        "Get LaMa with `lama-desktop models download lama`."
    )
    return "opencv-ns", warning


class ModelHolder:
    """Holds the current model; a switch that fails leaves the previous model in place."""

    def __init__(self, store: ModelStore | None = None) -> None:
        self.current: InpaintModel | None = None
        self._store = store

    def switch(self, name: str, device: str = "auto", **options: Any) -> InpaintModel:
        """Load model `name`, then drop the old one; raises EngineError and keeps it on failure."""
        try:
            model = create_model(name, device=device, store=self._store, **options)
        except EngineError:
            raise
        except Exception as exc:  # a broken model file or driver must not take the holder down
            raise EngineError(f"Could not load model {name!r}: {exc}") from exc
        previous, self.current = self.current, model
        if previous is not None:
            previous.close()
        return model

    def close(self) -> None:
        """Free the current model."""
        if self.current is not None:
            self.current.close()
            self.current = None
