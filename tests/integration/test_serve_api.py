"""`lama-desktop serve` as a real process: IOPaint's routes, its shapes, its errors, no mixing."""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.integration.serve_support import (
    ServeProcess,
    b64,
    encode,
    expected,
    metric,
    photo,
)

pytestmark = pytest.mark.integration

# IOPaint 1.6's iopaint/schema.py: ModelInfo (with its computed fields) and ServerConfigResponse.
MODEL_INFO_FIELDS = {
    "name", "path", "model_type", "is_single_file_diffusers", "need_prompt", "controlnets",
    "brushnets", "support_strength", "support_outpainting", "support_lcm_lora",
    "support_controlnet", "support_brushnet", "support_powerpaint_v2",
}  # fmt: skip
SERVER_CONFIG_FIELDS = {
    "plugins", "modelInfos", "removeBGModel", "removeBGModels", "realesrganModel",
    "realesrganModels", "interactiveSegModel", "interactiveSegModels", "enableFileManager",
    "enableAutoSaving", "enableControlnet", "controlnetMethod", "disableModelSwitch",
    "isDesktop", "samplers",
}  # fmt: skip
ERROR_FIELDS = {"error", "detail", "body", "errors"}  # IOPaint's api_middleware


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("serve")
    process = ServeProcess(
        root / "data", "--model", "cv2", "--local-workers", "2", "--max-body-mb", "2"
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.close()


def inpaint(server: ServeProcess, rgb: np.ndarray, mask: np.ndarray, **fields: object):  # type: ignore[no-untyped-def]
    body = {"image": b64(encode(rgb), "data:image/png;base64,"), "mask": b64(encode(mask))}
    return server.request("/api/v1/inpaint", {**body, **fields})


def test_inpaint_answers_the_engines_pixels_as_png_with_a_seed(server: ServeProcess) -> None:
    rgb, mask = photo(1)
    reply = inpaint(server, rgb, mask, sd_seed=7, unknown_field={"ignored": True})
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["Content-Type"] == "image/png"
    assert reply.headers["X-Seed"] == "7"
    assert np.array_equal(reply.rgb(), expected(rgb, mask))


def test_cv2_flag_radius_and_hd_strategy_are_honoured(server: ServeProcess) -> None:
    rgb, mask = photo(2, 120, 200)
    reply = inpaint(
        server, rgb, mask, cv2_flag="INPAINT_TELEA", cv2_radius=7,
        hd_strategy="Resize", hd_strategy_resize_limit=100,
    )  # fmt: skip
    assert reply.status == 200, reply.body[:300]
    want = expected(rgb, mask, "opencv-telea", 7, strategy="resize", resize_limit=100)
    assert np.array_equal(reply.rgb(), want)
    assert not np.array_equal(want, expected(rgb, mask))  # the options made a difference


def test_a_grey_mask_is_split_above_127_as_iopaint_does(server: ServeProcess) -> None:
    rgb, mask = photo(3)
    grey = np.where(mask > 0, 128, 127).astype(np.uint8)  # 127 keeps, 128 erases
    reply = inpaint(server, rgb, grey)
    assert np.array_equal(reply.rgb(), expected(rgb, mask))


def test_alpha_and_exif_survive(server: ServeProcess) -> None:
    rgb, mask = photo(4)
    alpha = np.arange(rgb.shape[0] * rgb.shape[1], dtype=np.uint32).reshape(rgb.shape[:2]) % 251
    rgba = np.dstack([rgb, alpha.astype(np.uint8)])
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    reply = server.request(
        "/api/v1/inpaint",
        {"image": b64(encode(rgba, "PNG", exif=exif.tobytes())), "mask": b64(encode(mask))},
    )
    assert reply.status == 200
    out = reply.rgba()
    assert np.array_equal(out[..., 3], rgba[..., 3])
    assert np.array_equal(out[..., :3], expected(rgb, mask))
    with Image.open(io.BytesIO(reply.body)) as image:
        assert image.getexif().get(0x010F) == "TestCam"
    jpeg = server.request(
        "/api/v1/inpaint",
        {"image": b64(encode(rgb, "JPEG", exif=exif.tobytes())), "mask": b64(encode(mask))},
    )
    assert jpeg.headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(jpeg.body)) as image:
        assert image.format == "JPEG" and image.getexif().get(0x010F) == "TestCam"


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"image": "IMAGE"}, 422, "mask"),
        ({"mask": "MASK"}, 422, "image"),
        ({"image": "not base64!", "mask": "MASK"}, 400, "image"),
        ({"image": "IMAGE", "mask": b64(b"not an image")}, 400, "mask"),
        ({"image": "IMAGE", "mask": "SMALL"}, 400, "not match"),
        ({"image": "IMAGE", "mask": "MASK", "hd_strategy": "Zoom"}, 422, "hd_strategy"),
        ({"image": "IMAGE", "mask": "MASK", "cv2_flag": "INPAINT_FAST"}, 422, "cv2_flag"),
        ({"image": 5, "mask": "MASK"}, 422, "image"),
    ],
)
def test_bad_requests_get_iopaints_error_shape(
    server: ServeProcess, body: dict[str, object], status: int, named: str
) -> None:
    rgb, mask = photo(5)
    values = {
        "IMAGE": b64(encode(rgb)),
        "MASK": b64(encode(mask)),
        "SMALL": b64(encode(mask[:10, :10])),
    }
    body = {k: values.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    reply = server.request("/api/v1/inpaint", body)
    assert reply.status == status, reply.body
    error = reply.json()
    assert set(error) == ERROR_FIELDS
    assert named in error["detail"]


def test_broken_json_and_a_huge_body_are_refused(server: ServeProcess) -> None:
    reply = server.request("/api/v1/inpaint", raw=b"{not json")
    assert reply.status == 422 and set(reply.json()) == ERROR_FIELDS
    huge = server.request("/api/v1/inpaint", raw=b'{"image": "' + b"A" * (3 << 20) + b'"}')
    assert huge.status == 413
    assert "limit" in huge.json()["detail"]


def test_32_concurrent_clients_each_get_their_own_photo(server: ServeProcess) -> None:
    photos = [photo(100 + i) for i in range(32)]

    def one(i: int) -> np.ndarray:
        reply = inpaint(server, *photos[i], sd_seed=i)
        assert reply.status == 200 and reply.headers["X-Seed"] == str(i)
        return reply.rgb()

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(32)))
    for (rgb, mask), result in zip(photos, results, strict=True):
        assert np.array_equal(result, expected(rgb, mask))
    done = metric(server.request("/metrics").body, "lama_jobs_done_total")
    assert done >= 32


def test_config_model_and_samplers_have_iopaints_shapes(server: ServeProcess) -> None:
    config = server.request("/api/v1/server-config").json()
    assert set(config) == SERVER_CONFIG_FIELDS
    assert [m["name"] for m in config["modelInfos"]] == ["cv2"]
    assert set(config["modelInfos"][0]) == MODEL_INFO_FIELDS
    model = server.request("/api/v1/model").json()
    assert set(model) == MODEL_INFO_FIELDS and model["name"] == "cv2"
    assert model["model_type"] == "inpaint"
    samplers = server.request("/api/v1/samplers").json()
    assert "UniPC" in samplers and len(samplers) == 19
    no_input = server.request("/api/v1/inputimage")
    assert no_input.status == 200 and no_input.json()["detail"] == "No input image configured"


def test_switching_the_model_changes_this_server_only_and_names_unknown_ones(
    server: ServeProcess,
) -> None:
    unknown = server.request("/api/v1/model", {"name": "sdxl-turbo"})
    assert unknown.status == 422 and "unknown model 'sdxl-turbo'" in unknown.json()["detail"]
    missing = server.request("/api/v1/model", {"name": "lama"})
    assert missing.status == 409 and "lama" in missing.json()["detail"]
    switched = server.request("/api/v1/model", {"name": "opencv-telea"})
    assert switched.status == 200 and switched.json()["name"] == "cv2"
    try:
        rgb, mask = photo(6)
        # No cv2_flag in the request: the server's model (Telea now) decides.
        assert np.array_equal(inpaint(server, rgb, mask).rgb(), expected(rgb, mask, "opencv-telea"))
    finally:
        assert server.request("/api/v1/model", {"name": "cv2"}).status == 200


def test_adjust_mask_expands_shrinks_and_reverses(server: ServeProcess) -> None:
    import cv2

    _, mask = photo(7)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    wants = {
        "expand": cv2.dilate(mask, kernel) > 128,
        "shrink": cv2.erode(mask, kernel) > 128,
        "reverse": mask < 127,
    }
    for operate, want in wants.items():
        reply = server.request(
            "/api/v1/adjust_mask", {"mask": b64(encode(mask)), "operate": operate, "kernel_size": 3}
        )
        assert reply.status == 200 and reply.headers["Content-Type"] == "image/png"
        out = reply.rgba()
        assert np.array_equal(out[..., 3] > 0, want), operate
        assert (out[want] == (255, 203, 0, 186)).all()


def test_the_token_is_required_and_metrics_count_jobs(server: ServeProcess) -> None:
    assert server.request("/api/v1/model", token=None).status == 401
    assert server.request("/api/v1/model", token="wrong").status == 401
    text = server.request("/metrics").body
    assert metric(text, "lama_workers") == 2
    assert b'lama_jobs_done_total{model="opencv-ns"' in text
    assert b"lama_job_seconds_bucket" in text


def test_serve_refuses_a_public_address_without_a_token(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from lama_desktop.cli import main

    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--token" in err and "0.0.0.0" in err
