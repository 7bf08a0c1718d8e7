"""The package's layering, checked on the source (static imports, function-level ones too):
no import cycle, no module reaching into another's `_private` names, the IR importing
neither the ops nor the config, and nothing below report/ importing matplotlib."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "gxnpuc")
MATPLOTLIB_OK = {"gxnpuc.report.hist", "gxnpuc.tune.report"}  # the two modules that draw
ABOVE_COMPILER = ("gxnpuc.report", "gxnpuc.evaluate", "gxnpuc.tune", "gxnpuc.cli", "gxnpuc.__main__")


def _modules() -> dict[str, ast.Module]:
    out = {}
    for folder, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].split(os.sep)
                name = ".".join(rel[:-1] if rel[-1] == "__init__" else rel)
                with open(os.path.join(folder, f), encoding="utf-8") as fh:
                    out[name] = ast.parse(fh.read())
    return out


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, str | None, str]]:
    """(module imported, name taken from it or None, the local name) for every import in `name`."""
    pkg = name if name in MODULES and _is_package(name) else name.rpartition(".")[0]
    out = []
    for n in ast.walk(MODULES[name]):
        if isinstance(n, ast.Import):
            out += [(a.name, None, a.asname or a.name) for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - n.level + 1]
                base = ".".join(parts + ([n.module] if n.module else []))
            out += [(base, a.name, a.asname or a.name) for a in n.names]
    return out


def _is_package(name: str) -> bool:
    return os.path.isdir(os.path.join(ROOT, *name.split(".")))


def _deps(name: str) -> set[str]:
    """gxnpuc modules `name` imports: `from a import b` counts as a.b when that is a module."""
    out = set()
    for mod, attr, _ in _imports(name):
        full = f"{mod}.{attr}" if attr else mod
        out.add(full if full in MODULES else mod)
    return {d for d in out if d in MODULES and d != name}


GRAPH = {m: _deps(m) for m in MODULES}


def _closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for d in GRAPH[todo.pop()]:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_no_import_cycle():
    cycles = sorted(m for m in MODULES if m in _closure(m))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_no_module_reaches_into_anothers_private_names():
    found = []
    for name in MODULES:
        bound = {}  # local name -> gxnpuc module it stands for
        for mod, attr, local in _imports(name):
            full = f"{mod}.{attr}" if attr else mod
            if attr and attr.startswith("_") and mod.startswith("gxnpuc") and attr != "__version__":
                found.append(f"{name}: from {mod} import {attr}")
            if full in MODULES:
                bound[local] = full
        for n in ast.walk(MODULES[name]):
            if (isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
                    and isinstance(n.value, ast.Name) and n.value.id in bound):
                found.append(f"{name}: {n.value.id}.{n.attr}")
    assert not found, found


LAYERS = (("gxnpuc", "gxnpuc.errors", "gxnpuc.ir", "gxnpuc.tables"),  # docs/architecture.md
          ("gxnpuc.ops", "gxnpuc.numerics", "gxnpuc.ranges", "gxnpuc.compress", "gxnpuc.config"),
          ("gxnpuc.frontend", "gxnpuc.passes", "gxnpuc.backend", "gxnpuc.targets", "gxnpuc.model",
           "gxnpuc.batching", "gxnpuc.sim", "gxnpuc.compiler", "gxnpuc.runtime_host"),
          ("gxnpuc.report", "gxnpuc.evaluate", "gxnpuc.tune", "gxnpuc.cli", "gxnpuc.__main__"))


def _layer(module: str) -> int:
    """The layer of the longest matching entry of LAYERS."""
    best = max((len(p), k) for k, layer in enumerate(LAYERS) for p in layer
               if module == p or module.startswith(p + "."))
    return best[1]


def test_modules_import_only_from_their_layer_or_below():
    up = [f"{m} -> {d}" for m in MODULES for d in GRAPH[m] if _layer(d) > _layer(m)]
    assert not up, up


def test_ir_imports_neither_ops_nor_config():
    bad = {d for d in _closure("gxnpuc.ir") if d.startswith(("gxnpuc.ops", "gxnpuc.config"))}
    assert not bad, bad


def test_nothing_below_report_imports_matplotlib():
    drawing = {m for m in MODULES if any(mod.split(".")[0] == "matplotlib" for mod, _, _ in _imports(m))}
    assert drawing <= MATPLOTLIB_OK, drawing - MATPLOTLIB_OK
    below = [m for m in MODULES if not m.startswith(ABOVE_COMPILER)]
    bad = {m: sorted(_closure(m) & (drawing | {d for d in MODULES if d.startswith(ABOVE_COMPILER)}))
           for m in below}
    assert not {m: d for m, d in bad.items() if d}, bad


def test_compiling_and_evaluating_load_no_matplotlib():
    code = ("import sys, gxnpuc.compiler, gxnpuc.sim, gxnpuc.evaluate, gxnpuc.tune.sweep; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
