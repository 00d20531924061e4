"""Turning a picture of a digit (PNG, JPEG, ...) into an MNIST-style 28×28 image.

MNIST digits are white on black, size-normalised to fit a 20×20 box with their
aspect ratio kept, and centred by centre of mass in a 28×28 field. `to_mnist`
does the same to any picture of one digit:

1. **Grayscale.** Colour is converted to luminance (ITU-R 601, Pillow's "L").
   If the picture has an alpha channel that is not fully opaque (a digit drawn
   on a transparent canvas), the opaque pixels are the ink: the alpha channel
   is used as the image, white strokes on black.
2. **Inversion.** The background is the median of the pixels on the picture's
   border. If it is lighter than mid-grey (> 127: dark ink on light paper), the
   picture is inverted, so that the digit is light on dark as in MNIST.
3. **Contrast.** The background level is subtracted and the rest stretched so
   that the brightest pixel is 255 (paper that is not pure white, a photo's
   uneven light); pixels at or below the background become 0.
4. **Bounding box.** The digit is the box around the pixels above 10% of the
   brightest. No such pixel: `ValueError` ("no digit found").
5. **20×20.** The box is scaled (anti-aliased) so that its longer side is 20
   pixels, keeping the aspect ratio.
6. **Centre of mass.** It is pasted into a black 28×28 image so that its
   centre of mass (pixel intensities as weights) lands on pixel (14, 14),
   where MNIST's digits have theirs; clipped so the digit stays inside.

Needs Pillow (``pip install "mnist_mlp[images]"``), imported when used.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._files import check_regular_file, display_name

__all__ = ["to_mnist", "load_image", "MissingPillow", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

_INK_FRACTION = 0.1  # step 4
_BOX = 20  # step 5
_FIELD = 28
_CENTRE = 14.0  # step 6: MNIST's mean centre of mass, in pixel indices (measured: 13.99, 14.00)


class MissingPillow(ImportError):
    """Pillow is needed to read images and is not installed."""


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as e:
        raise MissingPillow('reading images needs Pillow, which is not installed: pip install "mnist_mlp[images]"') from e
    return Image


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads an image file and returns it as MNIST does: (28, 28) uint8, white
    digit on black (see the module's docstring for the steps)."""
    Image = _pil()
    path = os.fspath(path)
    check_regular_file(path, "an image")  # a FIFO would block Image.open
    try:
        with Image.open(path) as im:
            im.load()
            return to_mnist(im)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except Image.DecompressionBombError as e:  # Pillow's guard against huge images (not an OSError)
        raise ValueError(f"{display_name(path)}: refused: {e}") from None
    except OSError as e:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"{display_name(path)}: not a readable image ({e})") from e
    except ValueError as e:
        raise ValueError(f"{display_name(path)}: {e}") from e


def _grayscale(image: Any) -> np.ndarray:
    """Step 1: a float64 (h, w) array in [0, 255]."""
    if isinstance(image, np.ndarray):
        if image.dtype.kind not in "biuf":
            raise ValueError(f"expected a numeric image array, got dtype {image.dtype}")
        a = image.astype(np.float64)
        if a.ndim == 3 and a.shape[2] in (3, 4):  # RGB(A)
            alpha = a[..., 3] if a.shape[2] == 4 else None
            if alpha is not None and alpha.min() < alpha.max():
                a = alpha
            else:
                a = a[..., :3] @ np.array([0.299, 0.587, 0.114])
        if a.ndim != 2:
            raise ValueError(f"expected a 2-D grayscale or (h, w, 3|4) colour image, got shape {image.shape}")
        if not np.isfinite(a).all():
            raise ValueError("the image holds non-finite values")
        if image.dtype.kind == "f" and a.max(initial=0) <= 1.0:
            a = a * 255.0  # floats in [0, 1]
        return a
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA").getchannel("A"), dtype=np.float64)
        if alpha.min() < alpha.max():
            return alpha
    if image.mode in ("I", "I;16", "F"):  # 16/32-bit grayscale: scale to [0, 255]
        a = np.asarray(image, dtype=np.float64)
        return a * (255.0 / a.max()) if a.max(initial=0) > 255 else a
    return np.asarray(image.convert("L"), dtype=np.float64)


def to_mnist(image: Any) -> np.ndarray:
    """A PIL image or a NumPy array (grayscale (h, w), or (h, w, 3|4) colour;
    uint8, or floats in [0, 1] or [0, 255]) of one digit -> (28, 28) uint8 in
    MNIST's form. See the module's docstring for the exact steps."""
    a = _grayscale(image)
    if a.size == 0:
        raise ValueError("the image is empty")
    # Step 2: invert when the border (the background) is light.
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if np.median(border) > 127:
        a = 255.0 - a
        border = 255.0 - border
    # Step 3: background to 0, brightest to 255.
    background = float(np.median(border))
    peak = float(a.max())
    if peak - background < 1e-6:
        raise ValueError("no digit found: the image is uniform")
    a = np.clip((a - background) / (peak - background), 0.0, 1.0) * 255.0
    # Step 4: the box around the ink.
    ink = np.argwhere(a > _INK_FRACTION * 255.0)
    if len(ink) == 0:
        raise ValueError("no digit found")
    (r0, c0), (r1, c1) = ink.min(axis=0), ink.max(axis=0) + 1
    box = a[r0:r1, c0:c1]
    # Step 5: longer side to 20 pixels, aspect ratio kept.
    h, w = box.shape
    scale = _BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = _resize(box, nh, nw)
    # Step 6: paste by centre of mass.
    total = small.sum()
    if total <= 0:
        raise ValueError("no digit found")
    rows, cols = np.indices(small.shape)
    cy, cx = (rows * small).sum() / total, (cols * small).sum() / total
    top = int(np.clip(round(_CENTRE - cy), 0, _FIELD - nh))
    left = int(np.clip(round(_CENTRE - cx), 0, _FIELD - nw))
    out = np.zeros((_FIELD, _FIELD), dtype=np.float64)
    out[top : top + nh, left : left + nw] = small
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Anti-aliased resize of a float image in [0, 255] (Pillow's LANCZOS on a
    32-bit float image, so nothing is rounded before the end)."""
    if a.shape == (h, w):
        return a.copy()
    Image = _pil()
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))  # mode "F"
    resample = Image.Resampling.LANCZOS if hasattr(Image, "Resampling") else Image.LANCZOS
    return np.clip(np.asarray(im.resize((w, h), resample=resample), dtype=np.float64), 0.0, 255.0)
