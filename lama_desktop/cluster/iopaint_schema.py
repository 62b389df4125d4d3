"""IOPaint 1.6's API vocabulary: requests parsed from JSON, its JSON answers and error shape."""

from __future__ import annotations

import base64
import binascii
import random
from typing import Any, Literal, TypeVar

import msgspec

from lama_desktop.engine.hd import HDConfig, HDStrategy

# IOPaint's SDSampler values, in its order (GET /api/v1/samplers; we run no diffusion model).
SAMPLERS = [
    "DPM++ 2M", "DPM++ 2M Karras", "DPM++ 2M SDE", "DPM++ 2M SDE Karras", "DPM++ SDE",
    "DPM++ SDE Karras", "DPM2", "DPM2 Karras", "DPM2 a", "DPM2 a Karras", "Euler", "Euler a",
    "Heun", "LMS", "LMS Karras", "DDIM", "PNDM", "UniPC", "LCM",
]  # fmt: skip
CV2_FLAGS = {"INPAINT_NS": "opencv-ns", "INPAINT_TELEA": "opencv-telea"}
# Our model names -> the name an IOPaint client knows the model by.
IOPAINT_NAMES = {"lama": "lama", "opencv-ns": "cv2", "opencv-telea": "cv2"}

T = TypeVar("T")
_VALIDATION = "RequestValidationError"  # FastAPI's name for a body that does not parse


class ApiError(Exception):
    """An answer other than 200: HTTP status and a one-line reason (IOPaint's error shape)."""

    def __init__(self, status: int, detail: str, kind: str = "HTTPException") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind

    def body(self) -> dict[str, Any]:
        """IOPaint's JSON error: {error, detail, body, errors}."""
        return {
            "error": self.kind,
            "detail": self.detail,
            "body": "",
            "errors": f"{self.status}: {self.detail}",
        }


class InpaintRequest(msgspec.Struct, kw_only=True):
    """The fields of IOPaint's InpaintRequest that an erase model uses; the rest are ignored."""

    image: str | None = None
    mask: str | None = None
    hd_strategy: str = "Crop"
    hd_strategy_crop_trigger_size: int = 800
    hd_strategy_crop_margin: int = 128
    hd_strategy_resize_limit: int = 1280
    cv2_flag: Literal["INPAINT_NS", "INPAINT_TELEA"] | None = None
    cv2_radius: int = 4
    sd_seed: int = 42

    def hd(self) -> HDConfig:
        """The HD strategy with IOPaint's field names and case ("Crop", "crop" alike)."""
        try:
            strategy = HDStrategy(self.hd_strategy.lower())
        except ValueError:
            raise ApiError(
                422, f"hd_strategy: {self.hd_strategy!r} is not one of Original, Resize, Crop"
            ) from None
        sizes = {
            "hd_strategy_crop_trigger_size": self.hd_strategy_crop_trigger_size,
            "hd_strategy_crop_margin": self.hd_strategy_crop_margin,
            "hd_strategy_resize_limit": self.hd_strategy_resize_limit,
        }
        for name, value in sizes.items():
            if value < (0 if name == "hd_strategy_crop_margin" else 1):
                raise ApiError(422, f"{name}: {value} is out of range")
        return HDConfig(
            strategy=strategy,
            crop_margin=self.hd_strategy_crop_margin,
            crop_trigger_size=self.hd_strategy_crop_trigger_size,
            resize_limit=self.hd_strategy_resize_limit,
        )

    def seed(self) -> int:
        """IOPaint's X-Seed: -1 means a random seed, drawn here as IOPaint does."""
        return random.randint(1, 99999999) if self.sd_seed == -1 else self.sd_seed


class SwitchModelRequest(msgspec.Struct):
    name: str


class AdjustMaskRequest(msgspec.Struct, kw_only=True):
    mask: str
    operate: Literal["expand", "shrink", "reverse"]
    kernel_size: int = 5


def parse(body: bytes, kind: type[T]) -> T:
    """Decode a JSON body into `kind`; unknown fields are ignored, bad ones are 422."""
    if not body:
        raise ApiError(422, "the request body is empty; send a JSON object")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(422, f"invalid request: {exc}", _VALIDATION) from None
    except msgspec.DecodeError as exc:
        raise ApiError(422, f"the body is not valid JSON ({exc})", _VALIDATION) from None


def decode_base64(text: str | None, field: str) -> bytes:
    """Image bytes from base64, with or without a `data:...;base64,` prefix."""
    if text is None or text == "":
        raise ApiError(422, f"{field}: field required (a base64-encoded image)")
    if text.startswith("data:"):
        head, sep, text = text.partition(",")
        if not sep or not head.endswith(";base64"):
            raise ApiError(400, f"{field}: a data: URL must be base64 (data:...;base64,...)")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{field}: not valid base64") from None
    if not data:
        raise ApiError(400, f"{field}: the decoded image is empty")
    return data


def model_info(name: str) -> dict[str, Any]:
    """IOPaint's ModelInfo (with its computed fields) for an erase model."""
    iopaint_name = IOPAINT_NAMES.get(name, name)
    return {
        "name": iopaint_name,
        "path": iopaint_name,
        "model_type": "inpaint",
        "is_single_file_diffusers": False,
        "need_prompt": False,
        "controlnets": [],
        "brushnets": [],
        "support_strength": False,
        "support_outpainting": False,
        "support_lcm_lora": False,
        "support_controlnet": False,
        "support_brushnet": False,
        "support_powerpaint_v2": False,
    }


def server_config(models: list[str]) -> dict[str, Any]:
    """IOPaint's ServerConfigResponse: our models, no plugins, no file manager."""
    infos: dict[str, dict[str, Any]] = {}
    for name in models:
        info = model_info(name)
        infos.setdefault(info["name"], info)
    return {
        "plugins": [],
        "modelInfos": list(infos.values()),
        "removeBGModel": "briaai/RMBG-1.4",
        "removeBGModels": ["briaai/RMBG-1.4"],
        "realesrganModel": "realesr-general-x4v3",
        "realesrganModels": ["realesr-general-x4v3"],
        "interactiveSegModel": "sam2_1_tiny",
        "interactiveSegModels": ["sam2_1_tiny"],
        "enableFileManager": False,
        "enableAutoSaving": False,
        "enableControlnet": False,
        "controlnetMethod": None,
        "disableModelSwitch": False,
        "isDesktop": False,
        "samplers": SAMPLERS,
    }
