"""The FFC generator stand-in: size of the big config, tiny forward, TorchScript export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lama_desktop.engine.lama_arch import (
    CONFIGS,
    FFCGenerator,
    build_generator,
    export_torchscript,
    parameter_count,
)


def test_big_config_has_about_51_million_parameters() -> None:
    with torch.device("meta"):  # shapes only: no memory, no random init, no forward
        model = FFCGenerator(CONFIGS["big"])
    count = parameter_count(model)
    assert 50_000_000 < count < 52_000_000
    assert len(model.blocks) == 18
    stem_conv = model.stem[1][0]
    assert (stem_conv.in_channels, stem_conv.out_channels, stem_conv.kernel_size) == (4, 64, (7, 7))
    first_ffc = model.blocks[0].first
    assert first_ffc.local_to_local.in_channels == 128  # 512 channels, 0.75 of them global
    assert first_ffc.global_to_global.fourier.conv.in_channels == 2 * 192


def test_unknown_config_is_refused() -> None:
    with pytest.raises(ValueError, match="tiny"):
        build_generator("huge")


def test_tiny_forward_composites_prediction_into_holes() -> None:
    model = build_generator("tiny")
    image = torch.rand(1, 3, 40, 56)
    mask = torch.zeros(1, 1, 40, 56)
    mask[..., 8:24, 16:40] = 1
    with torch.inference_mode():
        out = model(image, mask)
    assert out.shape == image.shape
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    keep = mask.expand_as(image) == 0
    assert torch.equal(out[keep], image[keep])
    assert not torch.allclose(out[~keep], image[~keep])


def test_same_seed_same_weights() -> None:
    first, second = build_generator("tiny", seed=3), build_generator("tiny", seed=3)
    other = build_generator("tiny", seed=4)
    w = next(iter(first.parameters()))
    assert torch.equal(w, next(iter(second.parameters())))
    assert not torch.equal(w, next(iter(other.parameters())))


def test_torchscript_export_matches_eager(tmp_path: Path) -> None:
    path = export_torchscript(tmp_path / "sub" / "tiny.pt", config="tiny", seed=1)
    loaded = torch.jit.load(str(path))
    eager: FFCGenerator = build_generator("tiny", seed=1)
    image = torch.rand(1, 3, 32, 48)
    mask = (torch.rand(1, 1, 32, 48) > 0.6).float()
    with torch.inference_mode():
        assert torch.allclose(loaded(image, mask), eager(image, mask), atol=1e-6)
        # A different size through the same file: nothing is fixed to one shape.
        assert loaded(torch.rand(1, 3, 64, 24), torch.ones(1, 1, 64, 24)).shape == (1, 3, 64, 24)
