"""Turning a picture of a digit (PNG, JPEG, ...) into an MNIST-style 28×28 image.

MNIST digits are white on black, size-normalised to fit a 20×20 box with their
aspect ratio kept, and centred by centre of mass in a 28×28 field. `to_mnist`
does the same to any picture of one digit:

1. **Grayscale.** Colour is converted to luminance (ITU-R 601, Pillow's "L").
   If the picture has an alpha channel that is not fully opaque (a digit drawn
   on a transparent canvas), the opaque pixels are the ink: the alpha channel
   is used as the image, white strokes on black.
2. **Inversion.** Otsu's threshold (from a 256-bin histogram of the whole
   picture) splits the pixels into a darker and a lighter class; the class
   with more pixels is the background (a tie: the darker). If it is the
   lighter one (dark ink on light paper), the picture is inverted (255 - v),
   so that the digit is light on dark as in MNIST. The whole picture decides,
   not its border: a dark frame or a scanner's dark edge does not change the
   answer as long as the paper still covers more than half of the picture.
3. **Background to 0.** The background's level is the median of the
   background class plus 5 times its median absolute deviation (its noise),
   at most the class's brightest pixel. It is subtracted, and every pixel at or
   below it becomes 0. Clean paper has no deviation, so its level is its grey;
   on noisy paper (grain, a scan's speckle) the noise goes to 0 as well.
4. **Frame.** Of the pixels left above 0, the 8-connected regions that touch
   the picture's edge and either run along more than half of one side or do
   not reach its middle (the central box of half its height and width) are
   set to 0: a frame, a scanner's dark edge, the dark corners of a rotated
   scan. If that would leave nothing, or only specks (ink spanning less than
   2% of the shorter side, or under 3 pixels), nothing is removed: a digit cropped so
   tightly that it touches the edges, or a digit that touches the frame (the
   two are one region, and the frame then stays).
5. **Contrast.** The rest is stretched so that the brightest pixel is 255.
6. **Bounding box.** The digit is the box around the pixels above 10% of the
   brightest. No such pixel: `ValueError` ("no digit found").
7. **20×20.** The box is scaled (anti-aliased) so that its longer side is 20
   pixels, keeping the aspect ratio.
8. **Centre of mass.** It is pasted into a black 28×28 image so that its
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

# Step 3: uniform noise ends 2 MADs above its median; for Gaussian noise sigma is
# 1.48 MADs, so 5 MADs is 3.4 sigma. The cap (the background class's brightest
# pixel) keeps the ink class whatever the spread.
_NOISE_MADS = 5.0
_INK_FRACTION = 0.1  # step 6
_BOX = 20  # step 7
_FIELD = 28
_CENTRE = 14.0  # step 8: MNIST's mean centre of mass, in pixel indices (measured: 13.99, 14.00)


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
            raise ValueError("the image holds non-finite values")  # before the scaling below looks at max()
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
    if not np.isfinite(a).all():  # a 32-bit float TIFF can hold NaN
        raise ValueError("the image holds non-finite values")
    if float(a.max()) - float(a.min()) < 1e-6:
        raise ValueError("no digit found: the image is uniform")
    # Step 2: Otsu's threshold splits the grey levels; the class covering more of
    # the picture is the background. A light background is inverted.
    dark = a < _otsu_threshold(a)
    n_dark = int(np.count_nonzero(dark))
    if a.size - n_dark > n_dark:
        a = 255.0 - a
        background = a[~dark]
    else:
        background = a[dark]
    # Step 3: the background's level (its median plus its noise) to 0.
    median = float(np.median(background))
    mad = float(np.median(np.abs(background - median)))
    level = min(median + _NOISE_MADS * mad, float(background.max()))
    a = np.maximum(a - level, 0.0)
    # Step 4: regions along the picture's edges (a frame, a scanner's edge) are not the digit.
    band = _edge_bands(a > 0)
    if band.any() and _extent((a > 0) & ~band) >= max(3.0, _MIN_REST * min(a.shape)):
        a[band] = 0.0
    # Step 5: contrast.
    peak = float(a.max())
    if peak <= 0:
        raise ValueError("no digit found")
    a *= 255.0 / peak
    # Step 6: the box around the ink.
    ink = np.argwhere(a > _INK_FRACTION * 255.0)
    if len(ink) == 0:
        raise ValueError("no digit found")
    (r0, c0), (r1, c1) = ink.min(axis=0), ink.max(axis=0) + 1
    box = a[r0:r1, c0:c1]
    # Step 7: longer side to 20 pixels, aspect ratio kept.
    h, w = box.shape
    scale = _BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = _resize(box, nh, nw)
    # Step 8: paste by centre of mass.
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


def _otsu_threshold(a: np.ndarray) -> float:
    """Otsu's threshold of a non-uniform image: the grey level t that maximises
    the between-class variance of {a < t} and {a >= t}, from a 256-bin
    histogram over [a.min(), a.max()]. Both classes are non-empty."""
    lo, hi = float(a.min()), float(a.max())
    hist, edges = np.histogram(a, bins=256, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)[:-1].astype(np.float64)  # pixels in bins 0..k, k = 0..254
    s0 = np.cumsum(hist * centres)[:-1]
    w1 = a.size - w0
    total = float((hist * centres).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (s0 / w0 - (total - s0) / w1) ** 2
    between[(w0 == 0) | (w1 == 0)] = -1.0
    return float(edges[int(np.argmax(between)) + 1])


# What the edge regions' removal must leave to be taken: ink spanning at least
# this share of the picture's shorter side (and 3 pixels). A speck of dust left
# inside a digit cropped to its edges is not a digit; the digit then stays.
_MIN_REST = 0.02


def _extent(mask: np.ndarray) -> float:
    """The longer side of the box around mask's pixels (0 when there are none)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return 0.0
    return float(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))


def _edge_bands(mask: np.ndarray) -> np.ndarray:
    """Step 4: the pixels of the 8-connected regions of `mask` that touch the
    image's edge (its first or last row or column) and either cover more than
    half of one side or have no pixel in the middle (rows h//4 .. h-h//4-1,
    columns w//4 .. w-w//4-1). Labelled by runs of pixels in each row, so that
    the work is in NumPy, not a Python loop over pixels."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    row, start = np.nonzero(step == 1)  # runs: row `row`, columns start..end-1, in row-major order
    end = np.nonzero(step == -1)[1]
    n = len(row)
    out = np.zeros((h, w), dtype=bool)
    if n == 0:
        return out
    # Run j of row r + 1 touches run i of row r (8-connectivity) if start_j <= end_i
    # and end_j >= start_i; with keys row * (w + 2) + column both are sorted.
    row64, start64, end64 = row.astype(np.int64), start.astype(np.int64), end.astype(np.int64)
    key_start, key_end = row64 * (w + 2) + start64, row64 * (w + 2) + end64
    below = (row64 + 1) * (w + 2)
    first = np.searchsorted(key_end, below + start64, side="left")
    stop = np.searchsorted(key_start, below + end64, side="right")
    count = np.maximum(stop - first, 0)
    i = np.repeat(np.arange(n), count)
    j = np.repeat(first, count) + np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    # Connected components of the runs: hook roots to the smaller root, then
    # pointer jumping, until every edge joins runs with the same root.
    label = np.arange(n)
    while True:
        li, lj = label[i], label[j]
        if np.array_equal(li, lj):
            break
        joined = np.minimum(li, lj)
        np.minimum.at(label, li, joined)
        np.minimum.at(label, lj, joined)
        while True:
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
    length = (end - start).astype(np.float64)
    top = np.bincount(label[row == 0], weights=length[row == 0], minlength=n)
    bottom = np.bincount(label[row == h - 1], weights=length[row == h - 1], minlength=n)
    left = np.bincount(label[start == 0], minlength=n)
    right = np.bincount(label[end == w], minlength=n)
    edge = (top > 0) | (bottom > 0) | (left > 0) | (right > 0)
    # Runs with a pixel in the middle: the central box of half the height and width.
    r_lo, r_hi, c_lo, c_hi = h // 4, h - h // 4, w // 4, w - w // 4
    central = (row >= r_lo) & (row < r_hi) & (start < c_hi) & (end > c_lo)
    reaches_middle = np.bincount(label[central], minlength=n) > 0
    band = edge & (~reaches_middle | (np.maximum(top, bottom) > w / 2) | (np.maximum(left, right) > h / 2))
    drop = band[label]
    if not drop.any():
        return out
    marks = np.zeros((h, w + 1), dtype=np.int32)
    np.add.at(marks, (row[drop], start[drop]), 1)
    np.add.at(marks, (row[drop], end[drop]), -1)
    return np.cumsum(marks, axis=1)[:, :w] > 0


def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Anti-aliased resize of a float image in [0, 255] (Pillow's LANCZOS on a
    32-bit float image, so nothing is rounded before the end)."""
    if a.shape == (h, w):
        return a.copy()
    Image = _pil()
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))  # mode "F"
    resample = Image.Resampling.LANCZOS if hasattr(Image, "Resampling") else Image.LANCZOS
    return np.clip(np.asarray(im.resize((w, h), resample=resample), dtype=np.float64), 0.0, 255.0)
