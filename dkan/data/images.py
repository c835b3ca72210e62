"""Reading images, the one way training, evaluation, prediction and the figures all use.

Images as they come (``decode_image``): 8-bit grayscale stays one channel (uint8) and is repeated to
three only as a model input; RGB/RGBA/palette become uint8 RGB; 16-bit PNG/TIFF ("I;16*") become
float32 divided by 65535, the dtype's range, so a 12-bit sensor's image stays dark rather than being
stretched or, as ``convert("RGB")`` does, saturated to white; 32-bit integer images ("I") are read
as 16-bit when their values fit (PIL opens some 16-bit files so), else divided by 2**32 - 1; float
images ("F") are taken as [0, 1] and clipped. Any size and aspect ratio is kept.

``read_image`` gives exactly the evaluation-time model input of the training dataset (float32
3xHxW in [0, 1]); ``collect_images`` turns files, folders and ``.txt`` lists into image paths.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dkan.errors import DataError

if TYPE_CHECKING:  # torch is imported where pixels become tensors: checking data (prepare-data) stays light
    import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
# what reading an image can raise: missing/unreadable/truncated files (OSError), bad modes, bombs
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
# the most pixels an image may have before it is decoded (a small file can hold a huge image: a
# 17 KB PNG of 144 megapixels takes 5.8 GB decoded); raise it with DKAN_MAX_IMAGE_PIXELS
MAX_PIXELS = 64_000_000


def max_pixels() -> int:
    """The pixel limit: ``DKAN_MAX_IMAGE_PIXELS`` (a positive whole number) or MAX_PIXELS."""
    raw = os.environ.get("DKAN_MAX_IMAGE_PIXELS", "").strip()
    if not raw:
        return MAX_PIXELS
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise DataError(f"DKAN_MAX_IMAGE_PIXELS={raw[:40]}", "not a positive whole number of pixels",
                        f"set it to e.g. 200000000, or unset it for the default of {MAX_PIXELS}")
    return limit


@contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """``path`` opened by PIL (its header read, nothing decoded yet), refused when it holds more than
    ``max_pixels()`` pixels. PIL's own limit (``Image.MAX_IMAGE_PIXELS``, which refuses twice it) is raised
    to ours when ours is higher, so that DKAN_MAX_IMAGE_PIXELS is the one limit that decides."""
    limit = max_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit
    fix = "shrink or tile the image, or raise the limit (DKAN_MAX_IMAGE_PIXELS=...) if it is meant"
    with warnings.catch_warnings():  # PIL warns of large images on opening; the limit below decides
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError:  # twice PIL's limit, which is at least ours: refused all the same
            raise DataError(str(path), f"more than {_pixels(2 * Image.MAX_IMAGE_PIXELS)}, above the limit of "
                            f"{_pixels(limit)}", fix) from None
    with im:
        w, h = im.size
        if w * h > limit:
            raise DataError(str(path), f"{w} x {h} pixels ({_pixels(w * h)}) is above the limit of {_pixels(limit)}",
                            fix)
        yield im


def _pixels(n: int) -> str:
    return f"{n / 1e6:.0f} megapixels" if n >= 10**6 else f"{n} pixels"


def check_image(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image from its header, within the pixel limit; an unreadable file is a DataError."""
    try:
        with open_image(path) as im:
            return im.size
    except DataError:
        raise
    except IMAGE_ERRORS as e:
        raise DataError(str(path), f"cannot be read as an image ({type(e).__name__}: {str(e)[:200]})",
                        "replace the file, or run `dkan prepare-data` again without it") from e


def decode_image(path: str | Path) -> torch.Tensor:
    """CxHxW, C = 1 (grayscale) or 3: uint8 for 8-bit files, float32 in [0, 1] for deeper ones. An image of
    more than ``max_pixels()`` pixels is refused from its header, before it is decoded."""
    import torch

    with open_image(path) as im:
        mode = im.mode
        if mode in ("L", "1", "LA", "La"):
            arr = np.array(im.convert("L"))
        elif mode.startswith("I;16") or mode in ("I", "F"):
            arr = _deep_to_unit(np.array(im), mode)
        else:  # RGB, RGBA, P, CMYK, YCbCr, 16-bit RGB (PIL reads it as 8-bit RGB)
            arr = np.array(im.convert("RGB"))
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def _deep_to_unit(arr: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit integer or float pixels -> float32 in [0, 1], scaled by the dtype's range."""
    if mode == "F":
        return np.clip(arr.astype(np.float32), 0.0, 1.0)
    arr = arr.astype(np.float64)
    full = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) <= 65535 else 4294967295.0
    return (np.clip(arr, 0, None) / full).astype(np.float32)


def three_channels(img: torch.Tensor) -> torch.Tensor:
    """A decoded image with the three channels backbones expect (grayscale repeated, not copied)."""
    return img.expand(3, -1, -1) if img.shape[0] == 1 else img


def read_image(path: str | Path) -> torch.Tensor:
    """float32 3xHxW in [0, 1]: the model input the training dataset gives at evaluation time."""
    import torch
    from torchvision.transforms import v2

    to_float = v2.ToDtype(torch.float32, scale=True)  # uint8 / 255; float images stay as they are
    return to_float(three_channels(decode_image(path))).contiguous()


def display_image(img: torch.Tensor) -> np.ndarray:
    """A model input (float 3xHxW in [0, 1]) -> HxWx3 uint8 for drawing."""
    import torch

    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders -> their image files (recursively, sorted); a ``.txt`` -> one path per
    line (relative to the list's folder; blank lines and ``#`` comments skipped). Missing paths are
    kept, so they are reported as unreadable alongside the others."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.suffix.lower() == ".txt" and p.is_file():
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(Path(line) if Path(line).is_absolute() else p.parent / line)
        else:
            out.append(p)
    return out
