"""Import direction (DESIGN.md §4), checked on the source with ``ast``:

- ``kernels/`` imports only numpy, numba (and llvmlite, numba's LLVM
  binding), the standard library and its own modules (relative imports or
  ``kernels.*``); never ``snn``, torch or matplotlib.
- ``snn``'s core does not import torch or matplotlib, at any level (inside
  functions too). The tools allowed to (files named ``interop*``, ``plot*``
  and the packages ``snn/convert``, ``snn/interop``, ``snn/plot``) are
  exempt.
- and, at run time, ``import snn`` loads neither torch nor matplotlib.
- the conversion modules import one another in one direction only (no
  import circle, not even through a function-level import).
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

# no snn, torch, matplotlib; llvmlite is numba's own LLVM binding (kernels._jit reads cached code with it)
KERNEL_ALLOWED = {"numpy", "numba", "llvmlite"} | set(sys.stdlib_module_names)
CORE_FORBIDDEN = {"torch", "matplotlib"}
# torch tools on top of the core: the converter (with its training helpers for
# the digits models and qcfs, the quantised activation trained for lossless
# conversion), interop and plotting (DESIGN.md §4: the simulator itself loads
# without torch, which test_import_snn_loads_no_torch_or_matplotlib checks).
TOOL_PREFIXES = ("interop", "plot")
TOOL_PACKAGES = ("convert", "interop", "plot")  # subpackages of snn/ that are tools, every file


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
        if rel.parts[0] in TOOL_PACKAGES and len(rel.parts) > 1:
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
    if path.relative_to(SNN).parts[0] in TOOL_PACKAGES
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


def module_name(path: Path, root: Path = ROOT) -> str:
    """``snn/convert/chain.py`` -> ``snn.convert.chain``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def snn_imports(path: Path, modules: set, root: Path = ROOT) -> set:
    """The modules of ``modules`` that ``path`` imports, at any level (inside
    functions too), relative or absolute; ``from package import name`` is an
    import of the submodule ``package.name`` if there is one, else of the
    package itself (its ``__init__``)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            full = ".".join(base + ([node.module] if node.module else []))
            targets = [(full, [alias.name for alias in node.names])]
        else:
            continue
        for full, names in targets:
            subs = [f"{full}.{n}" for n in names if f"{full}.{n}" in modules]
            found.update(subs)
            if len(subs) < len(names) or not names:
                while full and full not in modules:  # import a.b.c: the deepest module we know
                    full = full.rpartition(".")[0]
                if full:
                    found.add(full)
    found.discard(name)
    return found


def conversion_files() -> list[Path]:
    """The converter: the package ``snn/convert/`` (and any module ``snn/convert*.py``)."""
    return sorted(SNN.glob("convert*.py")) + sorted((SNN / "convert").rglob("*.py"))


def find_cycle(graph: dict) -> list | None:
    """One cycle of ``graph`` (``{node: set of nodes}``) as a list of nodes, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_conversion_modules_import_in_one_direction():
    """No module of the converter imports one that imports it back, directly
    or through others, not even in a function (an import made late to dodge a
    circle is still a circle: the two modules cannot be read, tested or
    replaced one without the other)."""
    files = conversion_files()
    assert files, "no conversion modules found"
    modules = {module_name(p) for p in files}
    graph = {module_name(p): snn_imports(p, modules) for p in files}
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("path", conversion_files(), ids=_id)
def test_conversion_relative_imports_resolve(path):
    """Every relative import of a conversion module, in a function too, names
    a module that exists (a module moved into the package keeps no stale
    ``from .x`` that only fails when its function runs)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = ROOT.joinpath(*package[: len(package) - node.level + 1], *(node.module or "").split("."))
            if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
                bad.append(f"line {node.lineno}: {'.' * node.level}{node.module or ''}")
    assert not bad, f"{_id(path)} imports modules that do not exist: {bad}"


def test_cycle_finder_sees_circles(tmp_path):
    """The scan itself: a function-level ``from .a import x`` closing a circle
    through a package ``__init__`` is found, and a one-way chain passes."""
    pkg = tmp_path / "snn" / "convert"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .b import g\n")
    (pkg / "a.py").write_text("X = 1\n")
    (pkg / "b.py").write_text("from .a import X\ndef g():\n    from . import g\n")
    files = sorted(pkg.glob("*.py"))
    modules = {module_name(p, tmp_path) for p in files}
    graph = {module_name(p, tmp_path): snn_imports(p, modules, tmp_path) for p in files}
    assert graph == {
        "snn.convert": {"snn.convert.b"},
        "snn.convert.a": set(),
        "snn.convert.b": {"snn.convert.a", "snn.convert"},
    }
    assert find_cycle(graph) == ["snn.convert", "snn.convert.b", "snn.convert"]
    graph["snn.convert.b"].discard("snn.convert")
    assert find_cycle(graph) is None
