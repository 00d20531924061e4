"""fit on uint8 MNIST makes no float copy of the dataset: peak RSS during fit
stays within a stated budget above what was resident before it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from conftest import DATA

# What fit may add on MNIST: with batches in order (as here), the batch plan
# (every block's forward groups, update lists and pixel dot products: 49 MB,
# about 5.4 bytes per nonzero pixel); when shuffling, the nonzero-pixel index
# instead (3 bytes per nonzero pixel, 27 MB). Then int32 labels, working copies
# of the weights and per-thread buffers (a few MB): about 53 MB, measured 48 MB.
# A float32 copy of the training images alone would be 188 MB.
BUDGET_MB = 70

CHILD = textwrap.dedent(
    """
    import sys, numpy as np, mnist_mlp as mm
    (x, y), (xt, yt) = mm.load_mnist(sys.argv[1])
    m = mm.MLP([784, 300, 10], seed=0)
    m.fit(x[:1000], y[:1000])  # warm up: import-time and first-call allocations
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = status("VmRSS")
    m.fit(x, y, epochs=1, validation_data=(xt, yt))
    print(before, status("VmHWM"))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_fit_peak_rss_growth_is_bounded(mnist):
    out = subprocess.run([sys.executable, "-c", CHILD, str(DATA)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    before, peak = map(float, out.stdout.split())
    growth = peak - before
    print(f"RSS before fit {before:.1f} MB, peak during fit {peak:.1f} MB, growth {growth:.1f} MB")
    assert growth < BUDGET_MB
