"""The typing files ship with the package: py.typed, and a _core stub that
describes everything the native module exports."""

from __future__ import annotations

import ast
from pathlib import Path

import mnist_mlp
from mnist_mlp import _core

PKG = Path(mnist_mlp.__file__).parent


def test_py_typed_and_core_stub_are_in_the_package():
    assert (PKG / "py.typed").is_file()
    assert (PKG / "_core.pyi").is_file()


def test_core_stub_names_every_export_with_its_members():
    tree = ast.parse((PKG / "_core.pyi").read_text())
    top: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            top[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            top[node.target.id] = node
    exported = {n for n in dir(_core) if not n.startswith("_")} | {"__version__"}
    assert exported <= set(top), exported - set(top)

    def members(cls: ast.ClassDef) -> set[str]:
        out = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
        for base in cls.bases:  # ModelF32(_Model[np.float32])
            name = base.value.id if isinstance(base, ast.Subscript) else getattr(base, "id", "")
            if isinstance(top.get(name), ast.ClassDef):
                out |= members(top[name])
        return out

    for name in ("ModelF32", "ModelF64", "NonzeroIndex"):
        runtime = {m for m in dir(getattr(_core, name)) if not m.startswith("_")} | {"__init__"}
        assert runtime <= members(top[name]), (name, runtime - members(top[name]))


def test_import_pulls_in_no_optional_dependency():
    import subprocess
    import sys

    code = "import sys, mnist_mlp; print([m for m in ('matplotlib', 'PIL', 'sklearn', 'tqdm') if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)
