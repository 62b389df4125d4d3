"""A LaMa-architecture stand-in (Fast Fourier Convolution generator) with random weights.

Written from the LaMa paper (Suvorov et al., "Resolution-robust Large Mask Inpainting with
Fourier Convolutions", WACV 2022) so tests and benchmarks run at the real model's cost without
the real weights. Big-LaMa: 4 input channels (masked RGB + mask), 7x7 stem to 64 channels,
three stride-2 downsamplings to 512 channels whose last one splits 0.75 of the channels into
the global (spectral) branch, 18 FFC residual blocks, three transposed-conv upsamplings, a 7x7
head and a sigmoid; about 51 M parameters.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class GeneratorConfig:
    """Sizes of the generator: base width, downsamplings, residual blocks, global ratio."""

    base_channels: int = 64
    downsamplings: int = 3
    blocks: int = 18
    global_ratio: float = 0.75


CONFIGS = {
    "big": GeneratorConfig(),
    "tiny": GeneratorConfig(base_channels=8, downsamplings=3, blocks=1),
}


def conv_bn_relu(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0
) -> nn.Sequential:
    """Conv (reflect padding, no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding, padding_mode="reflect", bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class FourierUnit(nn.Module):
    """Global mixing: real FFT -> 1x1 conv over (real, imag) channels -> inverse FFT."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels * 2, channels * 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels * 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        spectrum = torch.fft.rfftn(x.float(), dim=(-2, -1), norm="ortho")
        stacked = torch.stack((spectrum.real, spectrum.imag), dim=2)  # B, C, 2, H, W/2+1
        stacked = stacked.view(batch, channels * 2, height, -1).to(x.dtype)
        stacked = self.relu(self.bn(self.conv(stacked)))
        stacked = stacked.view(batch, channels, 2, height, -1).float()
        spectrum = torch.complex(stacked[:, :, 0], stacked[:, :, 1])
        out = torch.fft.irfftn(spectrum, s=(height, width), dim=(-2, -1), norm="ortho")
        return out.to(x.dtype)


class SpectralTransform(nn.Module):
    """The FFC global path: 1x1 halve -> FourierUnit -> 1x1 back, with a skip around the FFT."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        hidden = out_ch // 2
        self.reduce = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)
        )
        self.fourier = FourierUnit(hidden)
        self.expand = nn.Conv2d(hidden, out_ch, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.reduce(x)
        return self.expand(x + self.fourier(x))


class FFC(nn.Module):
    """Fast Fourier Convolution: local<->local/global 3x3 convs plus the spectral global path."""

    def __init__(self, channels: int, global_ratio: float) -> None:
        super().__init__()
        global_ch = int(channels * global_ratio)
        local_ch = channels - global_ch

        def conv(i: int, o: int) -> nn.Conv2d:
            return nn.Conv2d(i, o, 3, padding=1, padding_mode="reflect", bias=False)

        self.local_to_local = conv(local_ch, local_ch)
        self.local_to_global = conv(local_ch, global_ch)
        self.global_to_local = conv(global_ch, local_ch)
        self.global_to_global = SpectralTransform(global_ch, global_ch)
        self.bn_local = nn.BatchNorm2d(local_ch)
        self.bn_global = nn.BatchNorm2d(global_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x_local: Tensor, x_global: Tensor) -> tuple[Tensor, Tensor]:
        out_local = self.local_to_local(x_local) + self.global_to_local(x_global)
        out_global = self.local_to_global(x_local) + self.global_to_global(x_global)
        return self.relu(self.bn_local(out_local)), self.relu(self.bn_global(out_global))


class FFCResBlock(nn.Module):
    """Two FFCs with a residual connection on both branches."""

    def __init__(self, channels: int, global_ratio: float) -> None:
        super().__init__()
        self.first = FFC(channels, global_ratio)
        self.second = FFC(channels, global_ratio)

    def forward(self, x_local: Tensor, x_global: Tensor) -> tuple[Tensor, Tensor]:
        y_local, y_global = self.first(x_local, x_global)
        y_local, y_global = self.second(y_local, y_global)
        return x_local + y_local, x_global + y_global


class SplitDown(nn.Module):
    """Last downsampling: a stride-2 conv whose output is split into local and global parts."""

    def __init__(self, in_ch: int, out_ch: int, global_ratio: float) -> None:
        super().__init__()
        global_ch = int(out_ch * global_ratio)
        self.to_local = conv_bn_relu(in_ch, out_ch - global_ch, 3, stride=2, padding=1)
        self.to_global = conv_bn_relu(in_ch, global_ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.to_local(x), self.to_global(x)


class FFCGenerator(nn.Module):
    """The LaMa generator; forward(image, mask) composites its prediction into the holes."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        width = config.base_channels
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), conv_bn_relu(4, width, 7))
        downs: list[nn.Module] = []
        for _ in range(config.downsamplings - 1):
            downs.append(conv_bn_relu(width, width * 2, 3, stride=2, padding=1))
            width *= 2
        self.down = nn.Sequential(*downs)
        self.split = SplitDown(width, width * 2, config.global_ratio)
        width *= 2
        self.blocks = nn.ModuleList(
            [FFCResBlock(width, config.global_ratio) for _ in range(config.blocks)]
        )
        ups: list[nn.Module] = []
        for _ in range(config.downsamplings):
            ups += [
                nn.ConvTranspose2d(width, width // 2, 3, 2, padding=1, output_padding=1),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        self.up = nn.Sequential(*ups)
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(width, 3, 7), nn.Sigmoid())

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """image [B,3,H,W] in [0,1], mask [B,1,H,W] in {0,1}; H and W multiples of 8."""
        masked = image * (1 - mask)
        x = self.down(self.stem(torch.cat([masked, mask], dim=1)))
        x_local, x_global = self.split(x)
        for block in self.blocks:
            x_local, x_global = block(x_local, x_global)
        pred = self.head(self.up(torch.cat([x_local, x_global], dim=1)))
        return mask * pred + (1 - mask) * image


def build_generator(config: str = "big", seed: int = 0) -> FFCGenerator:
    """A generator with random (seeded) weights in eval mode; config "big" or "tiny"."""
    try:
        sizes = CONFIGS[config]
    except KeyError:
        raise ValueError(f"unknown config {config!r}; use one of {sorted(CONFIGS)}") from None
    generator = torch.Generator().manual_seed(seed)
    model = FFCGenerator(sizes)
    with torch.no_grad():
        for param in model.parameters():
            # Small random weights keep activations finite through 18 residual blocks.
            param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
    return model.eval()


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters())


def export_torchscript(
    path: Path | str, config: str = "tiny", seed: int = 0, method: str = "script"
) -> Path:
    """Save a random-weight generator as TorchScript where engine/lama.py can load it.

    `method` "script" compiles the Python; "trace" records one run on a 64x64 input, as the
    real big-lama.pt was made (sizes stay symbolic, so the file runs at any size).
    """
    model = build_generator(config, seed)
    if method == "script":
        module = torch.jit.script(model)
    elif method == "trace":
        image, mask = torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64)
        mask[..., 16:40, 20:44] = 1
        with warnings.catch_warnings():
            # The tracer warns about Python ints it records (shape arithmetic); they are
            # sizes taken from the input, which tracing keeps symbolic.
            warnings.simplefilter("ignore")
            module = torch.jit.trace(model, (image, mask), check_trace=False)
    else:
        raise ValueError(f"unknown export method {method!r}; use 'script' or 'trace'")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    module.save(str(target))
    return target
