"""A stroke on a 140 MP photo through a real agent and worker: only windows travel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest

from lama_desktop.cluster.scheduler import InpaintFailed
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.pipeline import JobSettings
from tests.integration.cluster_support import wait_for
from tests.integration.test_scheduler import cluster, run

pytestmark = pytest.mark.integration

CROP = JobSettings(model="opencv-telea", hd=HDConfig(strategy=HDStrategy.CROP))


def test_a_stroke_on_a_14000x10000_photo_comes_back_with_only_its_area_changed(
    tmp_path: Path,
) -> None:
    rgb = np.zeros((10_000, 14_000, 3), np.uint8)  # calloc'd: no 420 MB written up front
    rgb[4000:5000, 6000:8000] = np.random.default_rng(3).integers(0, 255, (1000, 2000, 3))
    mask = np.zeros((10_000, 14_000), np.uint8)
    cv2.line(mask, (6500, 4300), (7300, 4600), 255, 25)
    cv2.circle(mask, (13_990, 9990), 30, 255, -1)  # in the corner: its box shifts inward

    async def body() -> None:
        async with cluster(tmp_path, workers=1) as (scheduler, agent):
            await scheduler.add_node(agent.endpoint, agent.public_key.decode(), "node")
            await wait_for(lambda: any(p.ready for p in scheduler.peers.values()), 20, "ready")
            result = await asyncio.wait_for(scheduler.inpaint(rgb, mask, CROP), 60)
            assert result.rgb.shape == rgb.shape
            changed = (result.rgb != rgb).any(axis=2)  # (boolean indexing: 40 s at 140 MP)
            assert not (changed & (mask == 0)).any()
            stroke = result.rgb[4300:4600, 6500:7300][mask[4300:4600, 6500:7300] > 0]
            assert stroke.any()  # filled from the noise around it, not left black

            whole = JobSettings(model="opencv-telea", hd=HDConfig(strategy=HDStrategy.ORIGINAL))
            with pytest.raises(InpaintFailed, match="choose the crop strategy"):
                await scheduler.inpaint(rgb, mask, whole)
            assert not scheduler._interactive  # refused before anything was queued

    run(body)
