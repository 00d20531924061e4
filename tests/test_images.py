"""Pictures of digits -> MNIST-style 28x28 (mnist_mlp.images)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from mnist_mlp.images import load_image, to_mnist  # noqa: E402


def _as_photo(digit: np.ndarray, size=(200, 240), scale=(160, 160), at=(20, 30)) -> Image.Image:
    """A digit drawn dark on light paper, larger and off-centre."""
    canvas = Image.new("L", size, 235)
    ink = Image.fromarray(255 - digit).resize(scale, Image.Resampling.BILINEAR)
    canvas.paste(Image.fromarray(np.minimum(np.asarray(ink), 235)), at)
    return canvas


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_round_trip_of_mnist_digits(mnist):
    _, (xt, _) = mnist
    back = [to_mnist(_as_photo(d)) for d in xt[:40]]
    assert all(b.shape == (28, 28) and b.dtype == np.uint8 for b in back)
    corr = [_corr(b, d) for b, d in zip(back, xt[:40])]
    assert np.mean(corr) > 0.9 and min(corr) > 0.6


def test_inversion_rule_light_and_dark_backgrounds_agree(mnist):
    _, (xt, _) = mnist
    d = xt[0]
    dark_on_light = to_mnist(Image.fromarray(255 - d))
    light_on_dark = to_mnist(Image.fromarray(d))
    np.testing.assert_array_equal(dark_on_light, light_on_dark)
    assert dark_on_light[0].max() == 0 and dark_on_light.max() == 255  # background 0, ink stretched to 255


def test_box_aspect_ratio_and_centre_of_mass():
    tall = np.zeros((100, 100), np.uint8)
    tall[10:90, 45:55] = 255  # an 80x10 bar, like a "1"
    out = to_mnist(tall)
    rows, cols = np.nonzero(out > 25)
    assert rows.max() - rows.min() + 1 == 20  # the long side fills 20 pixels
    assert cols.max() - cols.min() + 1 <= 4  # the aspect ratio is kept
    w = out.astype(float)
    cy = (w.sum(1) * np.arange(28)).sum() / w.sum()
    cx = (w.sum(0) * np.arange(28)).sum() / w.sum()
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_colour_alpha_and_float_inputs(mnist, tmp_path):
    _, (xt, _) = mnist
    d = xt[1]
    ref = to_mnist(d)
    rgb = np.stack([255 - d] * 3, axis=-1)
    assert _corr(to_mnist(rgb), ref) > 0.99
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = d  # black ink on a transparent canvas
    Image.fromarray(rgba).save(tmp_path / "t.png")
    assert _corr(load_image(tmp_path / "t.png"), ref) > 0.99
    assert _corr(to_mnist(d.astype(np.float32) / 255), ref) > 0.99
    Image.fromarray(rgb).save(tmp_path / "d.jpg", quality=95)
    assert _corr(load_image(tmp_path / "d.jpg"), ref) > 0.95


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="no digit found"):
        to_mnist(np.full((30, 30), 200, np.uint8))
    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="not-an-image.png: not a readable image"):
        load_image(bad)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
