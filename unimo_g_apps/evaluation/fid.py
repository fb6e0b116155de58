"""Fréchet Inception Distance of generated against real images (the paper's Table 1 protocol).

    extractor, about = load_feature_extractor("download" | PATH | "tiny", device)
    fid = FidAccumulator(extractor, device)
    fid.add(fid_pixels(image, size=256), real=True) ...; fid.compute()

- Images: every image is brought to `size`x`size` (256, the paper's) before the features: real
  photos are centre-cropped to a square, then resized with PIL's bicubic filter (antialiased when
  shrinking); generated images (square, at the model's size) are resized the same way.
- Features: NVIDIA's TorchScript translation of the TensorFlow FID Inception
  (`inception-2015-12-05.pt`, StyleGAN2-ADA's metrics; clean-fid downloads the same file), called as
  `model(uint8 NCHW, return_features=True)`: it resizes to 299x299 itself and returns the 2048 pool3
  features. Loaded from a local path, or downloaded once to torch's hub cache and checked against
  its published SHA-256. No torchvision is needed.
- Distance: torchmetrics' `FrechetInceptionDistance` with that extractor injected (float64 sums,
  its own matrix square root).

FIDs are comparable only within one implementation and one resize; results name both.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
INCEPTION_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
INCEPTION_FILE = "inception-2015-12-05.pt"
DOWNLOAD, TINY = "download", "tiny"
RESIZE = "PIL bicubic"


class TorchScriptInception(torch.nn.Module):
    """`model(images, return_features=True)` of a TorchScript FID Inception: `(N, 3, H, W)` uint8 RGB
    -> `(N, F)` float32 features (the published file: F = 2048 pool3 features, resized to 299x299
    inside). F is read from one probe forward."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        probe = torch.zeros(1, 3, 64, 64, dtype=torch.uint8, device=next(iter(model.parameters())).device)
        self.num_features = int(self.forward(probe).shape[-1])

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images, return_features=True).float()


class TinyFeatureExtractor(torch.nn.Module):
    """A random-weight CNN in the Inception's place, for tests: `(N, 3, H, W)` uint8 -> `(N, 16)`."""

    num_features = 16

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.layers = torch.nn.Sequential(
                torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 5, stride=4),
                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers((images.float() - 128) / 128)  # the Inception's input scaling


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _downloaded_inception() -> Path:
    target = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_URL, str(target), hash_prefix=INCEPTION_SHA256[:8])
    return target


def load_feature_extractor(spec: str, device: torch.device | str = "cpu", seed: int = 0):
    """(extractor module on `device`, a dict describing it for results.json). `spec`: "download"
    (the published file, fetched once into torch's hub cache), a path to a TorchScript FID
    Inception, or "tiny" (random weights, tests only). OSError when the file cannot be had."""
    if spec == TINY:
        return TinyFeatureExtractor(seed).to(device), {"features": "tiny random CNN (tests only)", "sha256": None,
                                                       "published_weights": False}
    path = _downloaded_inception() if spec == DOWNLOAD else Path(spec)
    if not path.is_file():
        raise OSError(f"fid.inception: no file {path}")
    sha256 = sha256_of(path)
    if spec == DOWNLOAD and sha256 != INCEPTION_SHA256:
        raise OSError(f"{path}: SHA-256 {sha256} is not the published {INCEPTION_SHA256}: delete it and rerun")
    try:
        model = torch.jit.load(str(path), map_location=torch.device(device)).eval()
    except RuntimeError as err:
        raise OSError(f"fid.inception: {path} is not a TorchScript model: {str(err).splitlines()[0]}") from None
    about = {"features": f"TorchScript FID Inception {path.name} (pool3, 2048; resized to 299 inside)",
             "sha256": sha256, "published_weights": sha256 == INCEPTION_SHA256}
    return TorchScriptInception(model).to(device), about


def fid_pixels(image: Image.Image, size: int = 256) -> np.ndarray:
    """`(size, size, 3)` uint8 RGB: the image centre-cropped to a square, resized with PIL bicubic."""
    image = image.convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


class FidAccumulator:
    """torchmetrics' FrechetInceptionDistance around an injected extractor; images go in as
    `(H, W, 3)` uint8 arrays of one size, in batches."""

    def __init__(self, extractor: torch.nn.Module, device: torch.device | str = "cpu"):
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.device = torch.device(device)
        self.metric = FrechetInceptionDistance(feature=extractor, reset_real_features=False).to(self.device)

    def add(self, pixels: list[np.ndarray], real: bool) -> None:
        batch = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S) uint8
        self.metric.update(batch.to(self.device), real=real)

    def counts(self) -> tuple[int, int]:
        """(real, generated) images added so far."""
        return int(self.metric.real_features_num_samples), int(self.metric.fake_features_num_samples)

    def compute(self) -> float:
        return float(self.metric.compute())


def implementation() -> str:
    """How the number was computed, for results: library versions and the resize."""
    from importlib.metadata import version

    return (f"torchmetrics {version('torchmetrics')} FrechetInceptionDistance; images centre-cropped to a square "
            f"and resized with {RESIZE} (antialiased) to the FID size, then by the extractor")
