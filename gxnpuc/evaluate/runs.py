"""The simulated runs `--eval` and `--tune` share: the framework, the float IR, the npu as
compiled and the npu with nothing compressed, on every sample, simulated once; then any one
weight swapped into the constants and the model resumed from the first layer reading it
(outputs_with), so nothing is recompiled.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from gxnpuc import numerics, sim
from gxnpuc.errors import GxnpucError
from gxnpuc.evaluate import oracle, sequence
from gxnpuc.evaluate.metrics import snr_db
from gxnpuc.model import CompiledModel

if TYPE_CHECKING:
    from gxnpuc.config import Config
    from gxnpuc.ir import Graph


@dataclass
class Runs:
    """Everything simulated once and reused by the per-weight sweep."""
    model: CompiledModel
    samples: list[dict]  # per-sample feeds
    ref: dict  # framework outputs, [samples, *shape]
    float_envs: list[dict]  # float IR: the tensors the report needs
    npu_envs: list[dict]  # npu as compiled: the same tensors
    base_consts: dict  # npu constants with nothing compressed (compressed weights at fp16)
    base_envs: list[dict]  # npu with nothing compressed, what the sweep resumes from
    overflow: list = field(default_factory=list)  # tensors beyond the fp16 range in float
    first_nonfinite: str | None = None  # the first node output with inf/NaN in npu, finite in float


def progress(total: int | None, desc: str):
    """A progress bar on stderr (shown on a terminal only); .update() per simulated run."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, disable=None, unit="run")


def simulate(cfg: Config, model: CompiledModel, feeds: dict, bar, keep_all: bool = False) -> Runs:
    """Framework, float, npu and npu-without-compression runs of every sample.

    Each run keeps only the tensors the report needs (outputs, compressed layers' outputs,
    and what the sweep resumes from), or every tensor when keep_all (for --dump-dir).
    """
    g = model.graph
    samples = [sim.sample(g, feeds, i) for i in range(len(next(iter(feeds.values()))))]
    run = sequence.reference if sequence.is_unrolled(g) else oracle.run  # streaming: step by step
    ref = run(cfg, g, feeds, progress=lambda: bar.update())
    weights = compressed_weights(model)
    base_c = dict(sim.model_consts(model, "npu"))
    for sw in weights:
        base_c[sw.name] = numerics.round_f16(float_value(model, sw.name))
    report_keep = None if keep_all else (set(g.outputs) | {layer_output(g, sw.name) for sw in weights}
                                         | {i for o in g.outputs for i in sigmoid_inputs(g, o)})
    first = min((first_reader(g, sw.name) for sw in weights), default=len(g.nodes))
    resume_keep = set(g.outputs) | {i for n in g.nodes[first:] for i in n.inputs if i}
    overflow: set[str] = set()
    nonfinite: dict[str, set[str]] = {"float": set(), "npu": set()}

    def envs(consts, mode, keep, track=False):
        out = []
        cast = sim.model_cast(mode)
        for env in sim.run_samples(g, samples, consts, cast=cast, keep=True, progress=bar.update):
            env = sim.finish_outputs(model, env, mode)
            if mode == "float":
                overflow.update(k for k, v in env.items() if numerics.overflows(v))
            if track:  # the float and the as-compiled npu runs
                nonfinite[mode].update(k for k, v in env.items() if not numerics.finite(v))
            out.append(env if keep is None else {k: v for k, v in env.items() if k in keep})
        return out
    runs = Runs(model, samples, ref, envs(sim.model_consts(model, "float"), "float", report_keep, True),
                envs(sim.model_consts(model, "npu"), "npu", report_keep, True), base_c,
                envs(base_c, "npu", None if keep_all else resume_keep))
    runs.overflow = [o for n in g.nodes for o in n.outputs if o in overflow]
    runs.first_nonfinite = next((n.name for n in g.nodes for o in n.outputs
                                 if o in nonfinite["npu"] and o not in nonfinite["float"]), None)
    return runs


def layer_output(graph: Graph, weight: str) -> str:
    return graph.nodes[first_reader(graph, weight)].outputs[0]


PASS_THROUGH = ("reshape", "concat", "slice", "transpose", "identity")


def sigmoid_inputs(graph: Graph, output: str) -> list[str]:
    """The inputs (logits) of the sigmoids whose values reach `output` unchanged (through
    moves, concats and mean/max/min reductions); [] unless every value of it comes from one."""
    made = {o: n for n in graph.nodes for o in n.outputs}
    found: list[str] = []
    todo = [output]
    while todo:
        node = made.get(todo.pop())
        if node is None:
            return []
        if node.op == "act" and node.attrs.get("fn") == "sigmoid":
            found.append(node.inputs[0])
        elif node.op in PASS_THROUGH or (node.op == "reduce" and node.attrs.get("fn") in ("mean", "max", "min")):
            ins = node.inputs if node.op == "concat" else node.inputs[:1]
            if not all(i in made for i in ins) or any(i in made for i in node.inputs[len(ins):] if i):
                return []  # a constant part, or a second computed input
            todo += ins
        else:
            return []
    return found[::-1]


def compare_output(graph: Graph, name: str, ref: np.ndarray, x: np.ndarray, labels) -> dict:
    """metrics.compare for graph output `name`: per step for a model unrolled over a sequence
    (the step axis is not a class axis), and no top-1 for a state output."""
    from gxnpuc.evaluate import metrics

    if not sequence.is_unrolled(graph):
        return metrics.compare(ref, x, labels)
    info = graph.meta[sequence.META]
    return metrics.compare(ref, x, labels, steps=int(info["steps"]), classes=name not in info["pairs"])


def compressed_weights(model: CompiledModel) -> list:
    """The compressed StoredWeights in graph order (the order `-w` prints)."""
    return model.compressed_weights()


def float_value(model: CompiledModel, name: str) -> np.ndarray:
    data = model.graph.tensors[name].data
    if data is None:
        raise GxnpucError("--eval", f"weight {name!r} has no float value",
                          "evaluate a model compiled in memory, not one read from a file")
    return np.asarray(data, np.float32)


def first_reader(graph: Graph, name: str) -> int:
    return next(k for k, n in enumerate(graph.nodes) if name in n.inputs)


def stacked(envs: list[dict], name: str) -> np.ndarray:
    return np.stack([np.asarray(e[name]) for e in envs])


def outputs_with(runs: Runs, name: str, values: np.ndarray, bar=None) -> dict[str, np.ndarray]:
    """Model outputs (npu, nothing else compressed) with weight `name` set to `values`.

    Work is reused: each sample resumes from the nothing-compressed run at the first node
    that reads the weight (samples simulated in batches, sim.run_samples).
    """
    g, model = runs.model.graph, runs.model
    consts = {**runs.base_consts, name: values}
    res = sim.run_samples(g, runs.samples, consts, cast=numerics.round_f16, start=first_reader(g, name),
                          envs=runs.base_envs, progress=None if bar is None else bar.update)
    outs = [sim.finish_outputs(model, r, "npu") for r in res]
    return {k: stacked(outs, k) for k in g.outputs}


def output_snrs(runs: Runs, outs: dict) -> dict[str, float]:
    return {k: snr_db(runs.ref[k], outs[k]) for k in runs.model.graph.outputs}
