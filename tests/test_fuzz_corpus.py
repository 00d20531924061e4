"""Replays the fuzz corpus (tests/fuzz/corpus: seeds, found: inputs earlier
fuzz runs kept, crashes: findings) through the checks of tests/fuzz/fuzz_idx.py:
the C++ reader from bytes and from a file, the mmap header check and the
pure-Python gzip reader must agree, and raise nothing but IdxError/ValueError.
Cheap (about a hundred tiny files); the fuzzing itself runs in .ci/run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz"
FILES = sorted(p for d in ("corpus", "found", "crashes") for p in (FUZZ / d).iterdir() if p.is_file())


def _harness():
    spec = importlib.util.spec_from_file_location("fuzz_idx", FUZZ / "fuzz_idx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_corpus_is_there():
    assert len([p for p in FILES if p.parent.name == "corpus"]) >= 40
    assert [p for p in FILES if p.parent.name == "crashes"]


def test_replay_corpus_and_crashes(tmp_path):
    harness = _harness()
    harness._PATH = str(tmp_path / "input.idx")
    check = harness.check
    failures = []
    for path in FILES:
        try:
            check(path.read_bytes())
        except AssertionError as e:
            failures.append(f"{path.relative_to(FUZZ)}: {e}")
    assert not failures, "\n".join(failures)


def test_make_corpus_is_reproducible(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_corpus", FUZZ / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "OUT", tmp_path)
    module.main()
    made = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_bytes() for p in (FUZZ / "corpus").iterdir()}
    assert made == committed
