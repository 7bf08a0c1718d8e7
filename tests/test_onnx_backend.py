"""ONNX's own backend test cases, run through an onnx.backend adapter onto the simulator's
float mode (front end -> default passes -> sim.run).

Which cases run is generated from the op registry, never listed by hand:
1. candidates: the node cases of every onnx.backend.test.case.node module that names an op
   type in gxnpuc.ops.ONNX_LOWERINGS, plus the pytorch-converted and pytorch-operator cases;
2. kept when every node is a default-domain op with a lowering in ONNX_LOWERINGS, and every
   model input and expected output in the data is float32 (the NPU's only data type) and not
   empty;
3. inputs other than the first become constants when the compiler needs them constant (a
   Conv weight or a Clip bound fed as a model input): an NPU weight is always constant;
4. a case the compiler rejects with a user error (an attribute variant or shape the NPU does
   not support) is skipped with the compiler's one-line reason, so `pytest -rs` lists them.
The last test prints how many cases ran and passed.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import pkgutil
import re
import tempfile
import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep

from gxnpuc import sim
from gxnpuc.config import Config
from gxnpuc.errors import GxnpucError
from gxnpuc.ops import ONNX_LOWERINGS

MODEL_KINDS = ("pytorch-converted", "pytorch-operator")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the adapter -------------------------------------------------------------------------------
class GxnpucRep(BackendRep):
    """Compiles on the first run (the IR needs static shapes and constant weights)."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        inits = {t.name for t in model.graph.initializer}
        self.inputs = [i.name for i in model.graph.input if i.name not in inits]
        self.outputs = [o.name for o in model.graph.output]
        self.constified: list[str] = []

    def run(self, inputs, **kwargs):
        feeds = dict(zip(self.inputs, [np.asarray(x) for x in inputs]))
        graph = self._compile(feeds)
        out = sim.run(graph, {k: v for k, v in feeds.items() if k in graph.inputs})
        return tuple(np.asarray(out[name]) for name in self.outputs)

    def _compile(self, feeds: dict):
        try:
            return compile_model(self.model, feeds)
        except GxnpucError:
            if len(self.inputs) < 2:
                raise
        self.constified = self.inputs[1:]  # rule 3: weights / bounds as constants
        return compile_model(with_constants(self.model, {k: feeds[k] for k in self.constified}),
                             {self.inputs[0]: feeds[self.inputs[0]]})


class GxnpucBackend(Backend):
    @classmethod
    def is_compatible(cls, model, device="CPU", **kwargs) -> bool:
        return all(n.domain in ("", "ai.onnx") and n.op_type in ONNX_LOWERINGS for n in model.graph.node)

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        super().prepare(model, device, **kwargs)  # onnx.checker
        return GxnpucRep(model)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


def compile_model(model: onnx.ModelProto, feeds: dict):
    """compiler.lower: the real front end (it reads files), the default passes and checks."""
    from gxnpuc import compiler

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(model, path)
        return compiler.lower(Config(model_path=path, input_ops={k: v.shape for k, v in feeds.items()}))


def with_constants(model: onnx.ModelProto, values: dict) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    kept = [i for i in m.graph.input if i.name not in values]
    del m.graph.input[:]
    m.graph.input.extend(kept)
    m.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in values.items())
    return m


# -- the generated case list ------------------------------------------------------------------
def _node_cases() -> list:
    """Import only the node-case modules that name a registered op type (the others are slow)."""
    import onnx.backend.test.case.node as node_pkg

    wanted = re.compile(r'"(' + "|".join(map(re.escape, sorted(ONNX_LOWERINGS))) + r')"')
    for info in pkgutil.iter_modules(node_pkg.__path__):
        path = os.path.join(node_pkg.__path__[0], info.name + ".py")
        if not info.ispkg and os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                if wanted.search(fh.read()):
                    importlib.import_module(f"{node_pkg.__name__}.{info.name}")
    return [(c.name, c.model, c.data_sets, c.rtol, c.atol) for c in node_pkg._NodeTestCases]


def _model_dir_cases() -> list:
    from onnx.backend.test.loader import load_model_tests

    cases = []
    for kind in MODEL_KINDS:
        for c in load_model_tests(kind=kind):
            if c.model_dir:
                cases.append((c.name, os.path.join(c.model_dir, "model.onnx"), c.model_dir, c.rtol, c.atol))
    return cases


def _read_data_sets(model_dir: str) -> list:
    sets = []
    for d in sorted(x for x in os.listdir(model_dir) if x.startswith("test_data_set")):
        def load(prefix, d=d):
            names = sorted((f for f in os.listdir(os.path.join(model_dir, d)) if f.startswith(prefix)),
                           key=lambda f: int(re.sub(r"\D", "", f) or 0))
            return [numpy_helper.to_array(onnx.load_tensor(os.path.join(model_dir, d, f))) for f in names]
        sets.append((load("input_"), load("output_")))
    return sets


def _float_data(data_sets) -> bool:
    arrays = [a for ins, outs in data_sets for a in (*ins, *outs)]
    return bool(data_sets) and all(isinstance(a, np.ndarray) and a.dtype == np.float32 and a.size
                                   for a in arrays)


def collect() -> list:
    """(name, model, data_sets, rtol, atol) of every case the rules keep, sorted by name."""
    kept = []
    for name, model, data_sets, rtol, atol in _node_cases():
        if GxnpucBackend.is_compatible(model) and _float_data(data_sets):
            kept.append((name, model, data_sets, rtol, atol))
    for name, path, model_dir, rtol, atol in _model_dir_cases():
        model = onnx.load(path)
        if GxnpucBackend.is_compatible(model):
            data_sets = _read_data_sets(model_dir)
            if _float_data(data_sets):
                kept.append((name, model, data_sets, rtol, atol))
    return sorted(kept, key=lambda c: c[0])


def cached_collect() -> list:
    """collect(), cached in .pytest_cache per onnx version and registry: generating the node
    cases runs onnx's pure-Python reference pooling and takes seconds."""
    key = hashlib.sha256(" ".join([onnx.__version__, *sorted(ONNX_LOWERINGS)]).encode()).hexdigest()[:16]
    path = os.path.join(ROOT, ".pytest_cache", "gxnpuc-onnx-cases", key + ".pkl")
    if os.path.isfile(path):
        with open(path, "rb") as fh:
            return pickle.load(fh)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnx's case generators overflow on purpose
        cases = collect()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as fh:
        pickle.dump(cases, fh)
    os.replace(path + ".tmp", path)
    return cases


CASES = cached_collect()
RESULTS: dict[str, str] = {}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_onnx_backend_case(case):
    name, model, data_sets, rtol, atol = case
    rep = GxnpucBackend.prepare(model)
    for inputs, expected in data_sets:
        try:
            outs = rep.run(inputs)
        except GxnpucError as err:
            RESULTS[name] = "skipped"
            pytest.skip(f"rejected by the compiler: {err}")
        RESULTS[name] = "failed"
        assert len(outs) == len(expected)
        for got, want in zip(outs, expected):
            assert got.shape == want.shape, (got.shape, want.shape)
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    RESULTS[name] = "passed"


def test_zz_summary():
    """Runs last (file order): how many generated cases ran, passed and were skipped."""
    counts = {k: sum(1 for v in RESULTS.values() if v == k) for k in ("passed", "failed", "skipped")}
    ops = {n.op_type for _, m, *_ in CASES for n in m.graph.node}
    print(f"\nonnx backend cases: {len(CASES)} generated for {len(ops)} op types, "
          f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    if len(RESULTS) == len(CASES):  # the whole file ran
        assert counts["passed"] >= 0.8 * len(CASES), counts
