"""IOPaint 1.6's HTTP API in front of the scheduler: each inpaint request is one interactive job."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from aiohttp import web

from lama_desktop.cluster.events import NodeState, NodeView
from lama_desktop.cluster.iopaint_schema import (
    CV2_FLAGS,
    IOPAINT_NAMES,
    SAMPLERS,
    AdjustMaskRequest,
    ApiError,
    InpaintRequest,
    SwitchModelRequest,
    decode_base64,
    model_info,
    parse,
    server_config,
)
from lama_desktop.cluster.jobfiles import InteractiveResult
from lama_desktop.cluster.scheduler import InpaintFailed
from lama_desktop.engine.base import EngineError, canonical_name, get_spec
from lama_desktop.engine.imageio import Picture
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.request_images import (
    Answer,
    BadImage,
    adjust_mask,
    decode_grey_image,
    decode_mask,
    decode_photo,
    encode_answer,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 100 * 1024 * 1024  # base64 of a 60-70 MB photo plus its mask
REQUEST_TIMEOUT_S = 600.0
MODEL_WAIT_S = 10.0  # as `batch`: how long a node's workers may take to list their models
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_WORKING = (NodeState.IDLE, NodeState.BUSY)


class Inpainter(Protocol):
    """What the API needs of the scheduler (its public API only)."""

    async def inpaint(
        self, rgb: np.ndarray, mask: np.ndarray, settings: JobSettings
    ) -> InteractiveResult: ...

    def node_views(self) -> tuple[NodeView, ...]: ...


class IOPaintApi:
    """The routes of IOPaint's API; `model` is this server's default model (ours, by name)."""

    def __init__(
        self,
        scheduler: Inpainter,
        model: str,
        *,
        token: str | None = None,
        input_image: Path | None = None,
        request_timeout: float = REQUEST_TIMEOUT_S,
        max_body: int = MAX_BODY_BYTES,
        quality: int = 95,
    ) -> None:
        self.scheduler = scheduler
        self.model = canonical_name(model)
        self.token = token or None
        self.input_image = input_image
        self.request_timeout = request_timeout
        self.max_body = max_body
        self.quality = quality
        # Decode and encode run here, off the event loop; Pillow releases the GIL for most
        # of both, so they overlap with each other and with the loop.
        self._codec = ThreadPoolExecutor(
            max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="lama-api"
        )
        self.extra_routes: list[web.RouteDef] = []

    def application(self) -> web.Application:
        """The aiohttp application: IOPaint's routes behind auth, CORS and error handling."""
        # CORS outermost, as IOPaint's CORSMiddleware: error answers (401, 422, 404...) carry
        # its headers too, so a front end on another origin can read them.
        app = web.Application(
            client_max_size=self.max_body,
            middlewares=[self._cors, self._errors, self._auth],
        )
        app.add_routes(
            [
                web.post("/api/v1/inpaint", self.inpaint),
                web.get("/api/v1/server-config", self.server_config),
                web.get("/api/v1/model", self.current_model),
                web.post("/api/v1/model", self.switch_model),
                web.get("/api/v1/inputimage", self.input_image_route),
                web.get("/api/v1/samplers", self.samplers),
                web.post("/api/v1/adjust_mask", self.adjust_mask),
                *self.extra_routes,
            ]
        )
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _app: web.Application) -> None:
        self._codec.shutdown(wait=True)

    # ----- middlewares ------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every refusal in IOPaint's JSON error shape; a body over the limit before it is read."""
        try:
            length = request.content_length
            if length is not None and length > self.max_body:
                raise ApiError(413, f"the body is {length} bytes, over the {self.max_body} limit")
            return await handler(request)
        except ApiError as exc:
            return web.json_response(exc.body(), status=exc.status)
        except web.HTTPRequestEntityTooLarge:
            error = ApiError(413, f"the body is over the limit of {self.max_body} bytes")
            return web.json_response(error.body(), status=413)
        except web.HTTPException as exc:  # 404, 405 from the router
            if exc.status < 400:
                raise
            error = ApiError(exc.status, exc.reason)
            return web.json_response(error.body(), status=exc.status, headers=_allow(exc))
        except Exception as exc:
            log.exception("API error: %s %s", request.method, request.path)
            error = ApiError(500, f"{type(exc).__name__}: {exc}", type(exc).__name__)
            return web.json_response(error.body(), status=500)

    @web.middleware
    async def _cors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """IOPaint allows every origin; a browser front end on another port must be able to call."""
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "*"
            )
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = "X-Seed"
        return response

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), self.token.encode()
            ):
                raise ApiError(401, "this server needs `Authorization: Bearer TOKEN`")
        return await handler(request)

    # ----- routes -----------------------------------------------------------------------------

    async def inpaint(self, request: web.Request) -> web.Response:
        """POST /api/v1/inpaint: the cleaned photo's bytes in its own format, X-Seed header."""
        req, image_bytes, mask_bytes = await self._run(_read_inpaint, await request.read())
        settings = self._settings(req)
        have = await self._nodes_with(settings.model)
        if have and settings.model not in have:
            raise ApiError(
                503,
                f"no node has the model {settings.model!r} (nodes have "
                f"{', '.join(sorted(have))}); choose another with POST /api/v1/model",
            )
        seed = req.seed()
        picture, mask = await self._run(_decode_pair, image_bytes, mask_bytes)
        try:
            result = await asyncio.wait_for(
                self.scheduler.inpaint(picture.rgb, mask, settings), self.request_timeout
            )
        except TimeoutError:
            raise ApiError(504, f"no result within {self.request_timeout:.0f} s") from None
        except (InpaintFailed, EngineError) as exc:  # the job failed on every try: why
            raise ApiError(500, str(exc), type(exc).__name__) from None
        answer: Answer = await self._run(encode_answer, picture, result.rgb, self.quality)
        return web.Response(
            body=answer.data,
            content_type=f"image/{answer.ext}",
            headers={"X-Seed": str(seed)},
        )

    def _settings(self, req: InpaintRequest) -> JobSettings:
        model = self.model
        options: tuple[tuple[str, Any], ...] = ()
        if model in CV2_FLAGS.values():
            if req.cv2_radius < 1:
                raise ApiError(422, f"cv2_radius: {req.cv2_radius} must be at least 1")
            # IOPaint's cv2 model: the request's flag picks Navier-Stokes or Telea.
            model = CV2_FLAGS[req.cv2_flag] if req.cv2_flag else model
            options = (("radius", req.cv2_radius),)
        return JobSettings(model=model, hd=req.hd(), model_options=options)

    async def _run(self, func: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._codec, func, *args)
        except BadImage as exc:
            raise ApiError(400, str(exc)) from None

    async def server_config(self, _request: web.Request) -> web.Response:
        return web.json_response(server_config([self.model, *self.models_on_nodes()]))

    async def current_model(self, _request: web.Request) -> web.Response:
        return web.json_response(model_info(self.model))

    async def switch_model(self, request: web.Request) -> web.Response:
        """POST /api/v1/model: this server's default model only; nodes are never switched."""
        name = parse(await request.read(), SwitchModelRequest).name
        try:
            spec = get_spec(name)
        except EngineError:
            known = ", ".join(sorted({*IOPAINT_NAMES, *IOPAINT_NAMES.values()}))
            raise ApiError(422, f"unknown model {name!r}; choose one of {known}") from None
        have = self.models_on_nodes()
        if have and spec.name not in have and spec.name != self.model:
            raise ApiError(
                409,
                f"no node has the model {spec.name!r} (nodes have {', '.join(sorted(have))}); "
                f"get it with `lama-desktop models download {spec.name}`",
            )
        if spec.name != self.model:
            log.info("API default model: %s -> %s", self.model, spec.name)
        self.model = spec.name
        return web.json_response(model_info(self.model))

    async def _nodes_with(self, model: str) -> set[str]:
        """The working nodes' models, once `model` is among them or MODEL_WAIT_S has passed.

        A node lists plugin engines only once its workers are up, so a model may be missing
        for a few seconds after start; a model no node has is refused after that.
        """
        deadline = asyncio.get_running_loop().time() + MODEL_WAIT_S
        have = self.models_on_nodes()
        while have and model not in have and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            have = self.models_on_nodes()
        return have

    def models_on_nodes(self) -> set[str]:
        """Models of the nodes that can take jobs now."""
        nodes = self.scheduler.node_views()  # per request: never a view of every job
        return {m for n in nodes if n.state in _WORKING and n.enabled for m in n.models}

    async def input_image_route(self, _request: web.Request) -> web.StreamResponse:
        """IOPaint answers 200 with an error body when no input image was given."""
        if self.input_image is None:
            return web.json_response(ApiError(200, "No input image configured").body())
        if not self.input_image.is_file():
            raise ApiError(404, "Input image not found")
        return web.FileResponse(self.input_image)

    async def samplers(self, _request: web.Request) -> web.Response:
        return web.json_response(SAMPLERS)

    async def adjust_mask(self, request: web.Request) -> web.Response:
        req, grey = await self._run(_read_adjust_mask, await request.read())
        png = await self._run(adjust_mask, grey, req.kernel_size, req.operate)
        return web.Response(body=png, content_type="image/png")


# Parsing a body of up to MAX_BODY_BYTES and decoding its base64 take a good fraction of a
# second: these run on the codec threads, never on the event loop (the app's, when it serves).
def _read_inpaint(body: bytes) -> tuple[InpaintRequest, bytes, bytes]:
    req = parse(body, InpaintRequest)
    return req, decode_base64(req.image, "image"), decode_base64(req.mask, "mask")


def _read_adjust_mask(body: bytes) -> tuple[AdjustMaskRequest, np.ndarray]:
    req = parse(body, AdjustMaskRequest)
    return req, decode_grey_image(decode_base64(req.mask, "mask"), "mask")


def _decode_pair(image: bytes, mask: bytes) -> tuple[Picture, np.ndarray]:
    picture = decode_photo(image, "image")
    bits = decode_mask(mask, "mask")
    if bits.shape != picture.rgb.shape[:2]:
        raise ApiError(
            400,
            f"Image size({picture.rgb.shape[:2]}) and mask size({bits.shape}) not match.",
        )
    return picture, bits


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}
