"""Argument checks shared by the public API. Everything here runs before C++
touches memory, and each failure names the argument, the value and what was
expected."""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INPUT_DTYPES = (np.dtype(np.uint8),) + FLOAT_DTYPES


def model_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype: {dtype!r} is not a NumPy dtype; use float32 or float64") from e
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype: {dt} is not supported; use float32 or float64")
    return dt


INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


def _short(value: Any) -> str:
    """repr(value), cut to 60 characters (an integer may have millions of digits)."""
    if isinstance(value, numbers.Integral) and abs(int(value)) >= 10**30:
        return f"an integer of {len(str(abs(int(value))))} digits"
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


def positive_int(name: str, value: Any, *, minimum: int = 1, maximum: int = INT64_MAX) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {_short(value)}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {_short(value)}")
    if value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {_short(value)}")
    return value


def positive_float(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {_short(value)}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range (10**400)
        raise ValueError(f"{name} must be finite and > 0, got {_short(value)}, beyond a float's range") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def learning_rate(name: str, value: float, dtype: np.dtype) -> float:
    """A positive learning rate the model's dtype can hold as a normal number:
    below its smallest normal (1.2e-38 for float32) the update would be zero or
    lose its precision, above its maximum it would be Inf."""
    fi = np.finfo(dtype)
    if not float(fi.tiny) <= value <= float(fi.max):
        raise ValueError(
            f"{name}={value!r} is outside what a {np.dtype(dtype).name} model can use "
            f"([{float(fi.tiny):.3g}, {float(fi.max):.3g}]): the updates would be "
            + ("zero or lose their precision" if value < float(fi.tiny) else "infinite")
        )
    return value


def num_threads(value: Any) -> int | None:
    if value is None:
        return None
    return positive_int("num_threads", value, maximum=INT32_MAX)


def layer_sizes(sizes: Any) -> list[int]:
    try:
        sizes = list(sizes)
    except TypeError as e:
        raise TypeError(f"layer_sizes must be a sequence of integers, got {sizes!r}") from e
    if len(sizes) < 3:
        raise ValueError(
            f"layer_sizes needs an input size, at least one hidden layer and an output size, got {sizes}"
        )
    if len(sizes) > 65:
        raise ValueError(f"layer_sizes: at most 64 weight layers are supported, got {len(sizes) - 1}")
    out = []
    for i, s in enumerate(sizes):
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError(f"layer_sizes[{i}] must be an integer, got {s!r}")
        if not 1 <= int(s) <= 1 << 24:
            raise ValueError(f"layer_sizes[{i}] must be in [1, 16777216], got {s}")
        out.append(int(s))
    if out[-1] < 2:
        raise ValueError(f"the output layer needs at least 2 classes, got {out[-1]}")
    return out


class UnscaledInputWarning(UserWarning):
    """Float input that looks like pixel values 0..255 that were not divided by 255."""


# Integer-valued floats in [0, 255] whose maximum is above this look like unscaled
# pixels. 16 keeps scikit-learn's digits (integers 0..16, which train well as
# they are) quiet; MNIST-style pixels reach 255.
UNSCALED_MAX = 16


def looks_unscaled(x: np.ndarray) -> bool:
    """True when float ``x`` holds integer values in [0, 255] reaching above
    UNSCALED_MAX: pixels that were converted to float without dividing by 255.
    Looks at about 64 rows spread over ``x`` (a few microseconds for MNIST)."""
    if x.dtype.kind != "f" or x.size == 0:
        return False
    rows = x[:: max(1, len(x) // 64)]
    lo, hi = float(rows.min()), float(rows.max())
    return lo >= 0.0 and UNSCALED_MAX < hi <= 255.0 and bool(np.all(rows == np.rint(rows)))


def unscaled_warning(name: str, stacklevel: int = 3, code: str | None = None) -> None:
    """``name`` names the input in the message; ``code`` is the expression the
    advice uses (the argument's name; a file's name is not code)."""
    import warnings

    code = code or name
    warnings.warn(
        f"{name} looks like unscaled pixels (float values that are integers 0..255); the model expects "
        f"features near 0..1, as MNIST's pixels / 255. Divide by 255 ({code} / 255.0), or pass uint8 pixels, "
        "which are scaled for you. Trained on 0..255, a model stays near chance",
        UnscaledInputWarning,
        stacklevel=stacklevel,
    )


def input_values(x: Any, name: str = "x", code: str | None = None) -> np.ndarray:
    """The one rule for what input values mean (the API, the estimator's uint8
    path and the CLI's .npy / IDX inputs): uint8 and any other integer dtype
    whose values are within 0..255 are pixels, scaled by 1/255; float32 and
    float64 are features used as they are (float16 becomes float32, and a
    non-native byte order the native one); bool, and integers outside 0..255,
    are refused with what to do instead. ``name`` names the input in messages,
    ``code`` (default: ``name``) is the expression their advice uses."""
    code = code or name
    if isinstance(x, np.ma.MaskedArray):
        # Its data under the mask would be read as it is (NaN included).
        raise TypeError(
            f"{name} is a masked array; the core would read the values under the mask. "
            f"Pass {code}.filled(value), or drop the masked rows, first"
        )
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    check_mapped_file(x, name)  # before any value is read: a truncated mapping would be SIGBUS
    if x.dtype == np.bool_:
        raise TypeError(
            f"{name}: a bool array is neither pixels nor features; use {code}.astype(np.uint8) * 255 for "
            f"black-and-white pixels (True = ink), or {code}.astype(np.float32) for 0/1 features"
        )
    if x.dtype.kind in "iu" and x.dtype != np.uint8:
        if x.size:
            lo, hi = int(x.min()), int(x.max())
            if lo < 0 or hi > 255:
                raise ValueError(
                    f"{name}: integer values are pixels 0..255 (scaled by 1/255), but these reach [{lo}, {hi}]; "
                    f"pass float features instead ({code}.astype(np.float32), scaled as you need)"
                )
        return x.astype(np.uint8)
    if x.dtype == np.float16:
        return x.astype(np.float32)
    if x.dtype.kind == "f" and not x.dtype.isnative and x.dtype.newbyteorder("=") in FLOAT_DTYPES:
        return x.astype(x.dtype.newbyteorder("="))  # a big-endian .npy, say
    if x.dtype not in INPUT_DTYPES:
        raise TypeError(
            f"{name}: dtype {x.dtype} is not supported; use uint8 (or integer) pixels 0..255, scaled by 1/255, "
            "or float32/float64 features"
        )
    return x


def _one_sample_shape(shape: tuple[int, ...], features: int) -> bool:
    """(features,), one square image (28, 28), or (1, 28, 28): one sample. Not
    (784, 1) or (2, 392), which are more likely a mistake than one sample."""
    if len(shape) == 1:
        return shape[0] == features
    if len(shape) == 2:
        return shape[0] == shape[1] and shape[0] * shape[1] == features and shape[1] != features
    return len(shape) == 3 and shape[0] == 1 and shape[1] == shape[2] and shape[1] * shape[2] == features


def inputs(
    x: Any, features: int, *, name: str = "x", check_finite: bool = True, dtype: Any = None,
    one_sample: bool = False, warn_unscaled: bool = False,
) -> np.ndarray:
    """Returns x as a 2-D (samples, features) array the C++ core can read
    without copying: uint8 pixels, float32 or float64, C- or F-ordered (see
    `input_values` for what other dtypes become).
    ``dtype``: the model's; float64 values beyond float32's range are refused
    for a float32 model (they would become Inf inside it).
    ``one_sample``: a single sample given as (features,) or as an image whose
    size is ``features`` (a (28, 28) digit) is read as one row (predict).
    ``warn_unscaled``: warn when float x looks like unscaled pixels."""
    x = input_values(x, name)
    if x.ndim == 0:
        raise ValueError(f"{name} must be 2-D (samples, features), got a scalar")
    if one_sample and _one_sample_shape(x.shape, features):
        x = x.reshape(1, features)  # one image, (28, 28) or (784,); ravel order is the image's rows
    if x.ndim == 1:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {x.shape}; use {name}[None, :] for one sample")
    if x.ndim > 2:
        x = x.reshape(x.shape[0], int(np.prod(x.shape[1:])))  # (N, 28, 28) images -> (N, 784); N may be 0
    if x.shape[1] != features:
        hint = ""
        if _one_sample_shape(x.shape, features):
            hint = f"; for a single sample of shape {x.shape} use {name}.reshape(1, {features})"
        raise ValueError(f"{name} has {x.shape[1]} features per sample, the model expects {features}{hint}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if not x.flags.aligned or any(s % x.itemsize for s in x.strides):
        x = np.array(x, order="C", copy=True)  # a fresh array is aligned (ascontiguousarray may keep it as is)
    if check_finite and x.dtype != np.uint8 and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{name} holds a non-finite value {x[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    if check_finite and dtype is not None and np.dtype(dtype) == np.float32 and x.dtype == np.float64:
        big = float(np.finfo(np.float32).max)
        if x.max() > big or x.min() < -big:  # two reductions, no temporary array
            bad = np.argwhere(np.abs(x) > big)[0]
            raise ValueError(
                f"{name} holds {float(x[tuple(bad)])!r} at index {tuple(int(i) for i in bad)}, beyond float32's range "
                f"(+-{big:.3g}) of this float32 model; rescale the features"
            )
    if warn_unscaled and looks_unscaled(x):
        unscaled_warning(name, stacklevel=4)
    return x


def check_mapped_file(x: np.ndarray, name: str) -> None:
    """An array memory-mapped from a file (read_idx(mmap=True), np.memmap,
    np.load(mmap_mode=...)) whose file has since been truncated would end the
    process with SIGBUS when read: refuse it while the file is short. (A file
    cut after this check can still do that: the risk of any memory map.)"""
    root, base = None, x
    while base is not None:  # the memmap that owns the mapping is the last one in the chain
        if isinstance(base, np.memmap):
            root = base
        base = getattr(base, "base", None)
    if root is None or not getattr(root, "filename", None):
        return
    need = int(root.offset) + int(root.nbytes)
    try:
        size = os.stat(root.filename).st_size
    except OSError as e:
        raise ValueError(f"{name} is memory-mapped from {root.filename}, which cannot be read now: {e}") from None
    if size < need:
        raise ValueError(
            f"{name} is memory-mapped from {root.filename}, which was truncated to {size} bytes "
            f"after it was mapped; its array needs {need}. Read the file again"
        )


def labels(y: Any, n: int, classes: int, *, name: str = "y") -> np.ndarray:
    """Class ids (n,) or one-hot rows (n, classes) -> contiguous int32 ids."""
    if isinstance(y, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array; pass {name}.filled(value), or drop the masked rows, first")
    y = np.asarray(y)
    if y.ndim == 2:
        if y.shape != (n, classes):
            raise ValueError(f"{name}: one-hot labels must have shape ({n}, {classes}), got {y.shape}")
        if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.number):
            raise TypeError(f"{name}: one-hot labels must be numeric, got dtype {y.dtype}")
        ones = y == 1
        if not ((ones | (y == 0)).all() and (ones.sum(axis=1) == 1).all()):
            row = int(np.argmax(~((ones | (y == 0)).all(axis=1) & (ones.sum(axis=1) == 1))))
            raise ValueError(f"{name}: row {row} is not one-hot (exactly one 1, the rest 0): {y[row]}")
        return np.array(np.argmax(y, axis=1), dtype=np.int32)
    if y.ndim != 1:
        raise ValueError(f"{name} must be class ids (n,) or one-hot (n, classes), got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"len({name}) = {len(y)} but there are {n} samples")
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name}: class ids must be integers, got dtype {y.dtype}")
    if n:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= classes:
            bad = int(np.argmax((y < 0) | (y >= classes)))
            raise ValueError(
                f"{name}: label {int(y[bad])} at index {bad} is outside [0, {classes}) "
                f"for a model with {classes} outputs"
            )
    # Always a private copy: the core reads labels without the GIL, so a caller's
    # array must not change under it after the range check.
    return np.array(y, dtype=np.int32, order="C", copy=True)


ACTIVATIONS = ("relu", "tanh", "logistic", "identity")


def activation(value: Any) -> str:
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, got {value!r}")
    return value


def dropout(value: Any, hidden: int) -> list[float]:
    """One rate in [0, 1) per hidden layer, from a float or a sequence of them."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"dropout must be a float in [0, 1) or one per hidden layer, got {value!r}")
    if isinstance(value, numbers.Real):
        rates = [float(value)] * hidden
    else:
        try:
            rates = list(value)
        except TypeError as e:
            raise TypeError(f"dropout must be a float in [0, 1) or one per hidden layer, got {value!r}") from e
        if len(rates) != hidden:
            raise ValueError(f"dropout has {len(rates)} rates but the network has {hidden} hidden layers")
    out = []
    for i, p in enumerate(rates):
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
            raise TypeError(f"dropout[{i}] must be a real number, got {p!r}")
        p = float(p)
        if not (0.0 <= p < 1.0):
            raise ValueError(f"dropout rates must be in [0, 1), got {p!r}")
        out.append(p)
    return out
