"""Import direction (DESIGN.md §4), checked on the source with ``ast``:

- ``kernels/`` imports only numpy, numba, the standard library and its own
  modules (relative imports or ``kernels.*``); never ``snn``, torch or
  matplotlib.
- ``snn``'s core does not import torch or matplotlib, at any level (inside
  functions too). The tools allowed to (files named ``convert*``,
  ``training*``, ``qcfs*``, ``interop*``, ``plot*`` and the packages ``snn/interop``, ``snn/plot``) are
  exempt.
- and, at run time, ``import snn`` loads neither torch nor matplotlib.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "kernels"
SNN = ROOT / "snn"

KERNEL_ALLOWED = {"numpy", "numba"} | set(sys.stdlib_module_names)  # no snn, torch, matplotlib
CORE_FORBIDDEN = {"torch", "matplotlib"}
# torch tools on top of the core: the converter, its training helpers for the
# digits models (qcfs: the quantised activation trained for lossless conversion),
# interop and plotting (DESIGN.md §4: the simulator itself loads without torch,
# which test_import_snn_loads_no_torch_or_matplotlib checks).
TOOL_PREFIXES = ("convert", "training", "qcfs", "interop", "plot")


def imports_of(path: Path) -> list[tuple[int, str, int]]:
    """``(level, module, lineno)`` of every import in ``path``: level 0 for
    absolute imports, > 0 for relative ones; ``import a.b`` gives ``a.b``,
    ``from a.b import c`` gives ``a.b``; ``importlib.import_module("x")`` and
    ``__import__("x")`` with a literal name count as imports of ``x``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(0, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or "", node.lineno))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in ("import_module", "__import__"):
                found.append((0, node.args[0].value, node.lineno))
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def kernel_files():
    files = sorted(KERNELS.rglob("*.py"))
    assert files, "kernels/ has no Python files"
    return files


def core_files():
    files = []
    for path in sorted(SNN.rglob("*.py")):
        rel = path.relative_to(SNN)
        if rel.parts[0] in ("interop", "plot") and len(rel.parts) > 1:
            continue
        if path.name.startswith(TOOL_PREFIXES):
            continue
        files.append(path)
    assert files, "snn/ has no core Python files"
    return files


def _id(path):
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", kernel_files(), ids=_id)
def test_kernels_import_only_numpy_numba_and_themselves(path):
    bad = []
    for level, module, line in imports_of(path):
        if level > 0:  # relative import: inside kernels/
            continue
        if top(module) in KERNEL_ALLOWED or top(module) == "snn_kernels":
            continue
        if module == "__future__":
            continue
        bad.append(f"line {line}: {module}")
    assert not bad, f"{_id(path)} imports outside numpy/numba: {bad}"


@pytest.mark.parametrize("path", core_files(), ids=_id)
def test_snn_core_does_not_import_torch_or_matplotlib(path):
    bad = [
        f"line {line}: {module}"
        for level, module, line in imports_of(path)
        if level == 0 and top(module) in CORE_FORBIDDEN
    ]
    assert not bad, f"{_id(path)} imports {bad}"


def test_scanner_sees_imports():
    """The scan itself works: it finds absolute, relative, nested and dynamic imports."""
    src = (
        "import numpy as np\nfrom .x import y\nfrom torch.nn import Linear\n"
        "def f():\n    import matplotlib.pyplot as plt\n    importlib.import_module('snn')\n"
    )
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"_scan_probe_{os.getpid()}.py"
    tmp.write_text(src)
    try:
        found = {(lvl, mod) for lvl, mod, _ in imports_of(tmp)}
    finally:
        tmp.unlink()
    assert found == {(0, "numpy"), (1, "x"), (0, "torch.nn"), (0, "matplotlib.pyplot"), (0, "snn")}


def test_import_snn_loads_no_torch_or_matplotlib():
    code = (
        "import sys, snn, snn_kernels; "
        "bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_foreign_kernels_package_does_not_clash(tmp_path):
    """The folder kernels/ is imported as ``snn_kernels``: a package named
    ``kernels`` (there is one on the package index) first on the path breaks
    neither it nor us."""
    foreign = tmp_path / "kernels"
    foreign.mkdir()
    (foreign / "__init__.py").write_text("FOREIGN = True\n")
    code = (
        "import numpy as np, kernels, snn\n"
        "assert kernels.FOREIGN\n"
        "net = snn.Network([snn.Linear(2, 1, snn.IF(), weight=[[1.0, 1.0]])])\n"
        "assert net.run(np.ones((3, 1, 2), np.uint8)).spikes(-1).sum() == 3\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_package_is_installed():
    """pyproject.toml lists the packages by hand (the kernels' import name
    differs from their folder): every folder of snn/ with an __init__.py is
    listed, so an install never misses one."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in SNN.rglob("__init__.py")}
    assert found | {"snn_kernels"} == listed


TOOLS = [
    path
    for path in sorted(SNN.rglob("*.py"))
    if path.relative_to(SNN).parts[0] in ("interop", "plot")
    or path.name.startswith(TOOL_PREFIXES + ("profile", "distributed", "cli", "energy", "io"))
]


@pytest.mark.parametrize("path", TOOLS, ids=_id)
def test_tools_reach_kernels_only_through_the_core(path):
    """DESIGN.md §4: the converter, profiler, plots, interop, Dask, files and
    the CLI use the network's public API and its counters, never a kernel."""
    bad = [
        f"line {line}: {module}" for level, module, line in imports_of(path) if top(module) == "snn_kernels"
    ]
    assert not bad, f"{_id(path)} imports the kernels directly: {bad}"
