"""Progress bars over epochs (or trials), on tqdm: used by `MLP.fit(verbose=True)`,
the `mnist-mlp` command and `mnist_mlp.sweep`. A bar is drawn only on a
terminal; elsewhere lines go straight to the stream."""

from __future__ import annotations

import sys
from typing import IO, Any


class NoBar:
    """No bar: lines go straight to the stream."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def update(self, rec: dict[str, Any]) -> None:
        pass

    def batches(self, done: int, total: int) -> None:
        """Progress within the current epoch (called about every millisecond)."""

    def close(self) -> None:
        pass


class TqdmBar(NoBar):
    """tqdm's bar, moving within each epoch; lines are written above it. Its
    time estimate is tqdm's (a smoothed rate over the fractional epochs)."""

    def __init__(self, stream: IO[str], total: int, unit: str = "epoch", label: str = "test accuracy") -> None:
        super().__init__(stream)
        from tqdm import tqdm

        self._tqdm = tqdm
        count = "{n:.1f}" if unit == "epoch" else "{n:.0f}"  # epochs move within, trials by one
        self.bar = tqdm(total=total, unit=unit, file=stream, leave=False, dynamic_ncols=True, mininterval=0.1,
                        bar_format="{l_bar}{bar}| " + count + "/{total} " + unit + "s [{elapsed}<{remaining}{postfix}]")
        self.part = 0.0
        self.label = label

    def write(self, line: str) -> None:
        self._tqdm.write(line, file=self.stream)

    def update(self, rec: dict[str, Any]) -> None:
        if "test_accuracy" in rec:
            self.bar.set_postfix_str(f"{self.label} {rec['test_accuracy']:.4f}", refresh=False)
        self.bar.update(1 - self.part)
        self.part = 0.0
        self.bar.refresh()  # an epoch's end is always shown

    def batches(self, done: int, total: int) -> None:
        part = done / max(total, 1)
        if part > self.part:
            self.bar.update(part - self.part)
            self.part = part

    def close(self) -> None:
        self.bar.close()


def progress_bar(total: int, stream: IO[str] | None = None, *, enabled: bool = True,
                 unit: str = "epoch", label: str = "test accuracy") -> NoBar:
    """A bar over ``total`` epochs (or other ``unit``s) on ``stream`` (stdout),
    or none when ``stream`` is not a terminal or not ``enabled``.
    ``write(line)`` prints a line above the bar; ``update(rec)`` advances it by
    one, showing ``label`` and rec's ``test_accuracy``; ``batches(done,
    total)`` moves it within the current one."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if not enabled or not (callable(isatty) and isatty()):
        return NoBar(stream)
    return TqdmBar(stream, total, unit, label)
