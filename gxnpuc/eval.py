"""`gxnpuc --eval DATA`: how far the compiled model is from the source framework, and why.

Runs the framework (gxnpuc.oracle), the float IR and the npu simulation on the same inputs;
compares each output; for every compressed weight measures its layer's accumulated error and
the model output with only that weight compressed (one weight swapped into the constants,
resuming from that layer: nothing is recompiled); then names the weight to exclude or clip
first, with the config line to paste. Text, JSON and CSV come from gxnpuc.eval_report.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from gxnpuc import eval_report, numerics, oracle, sequence, sim
from gxnpuc.errors import ConfigError, GxnpucError, OutputError

RANDOM_SAMPLES = 16
NPZ_HINT = "np.savez(path, <input name>=array of shape [samples, *input shape], labels=...)"


def main(cfg, args, model=None) -> int:
    """The --eval entry point: args.eval is an .npz path or `random`; args.dump_dir optional."""
    from gxnpuc import compiler

    model = model if model is not None else compiler.compile(cfg)
    data = getattr(args, "eval", None) or "random"
    model, feeds, labels, source = sequence.load(data, model, getattr(args, "eval_samples", None),
                                                 getattr(args, "seed", None) or 0)
    report = evaluate(cfg, model, feeds, labels, source, getattr(args, "dump_dir", None))
    print(eval_report.text(report))
    if report.get("steps"):
        print(sequence.text(report))
    json_path, csv_path = eval_report.write(report, cfg.output_file)
    print(f"report written: {_shown(json_path)}, {_shown(csv_path)}")
    return 0


def _shown(path: str) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


# -- inputs ---------------------------------------------------------------------------------
def load_inputs(data: str, graph, samples: int | None = None, seed: int = 0):
    """(feeds {input: [samples, *shape] float32}, labels [samples] or None, description)."""
    if data == "random":
        n = int(samples or RANDOM_SAMPLES)
        rng = np.random.default_rng(seed)
        feeds = {k: rng.standard_normal((n, *graph.tensors[k].shape)).astype(np.float32)
                 for k in graph.inputs}
        return feeds, None, f"random (seed {seed})"
    arrays = _read_arrays(data, graph)
    feeds = {k: _input_array(data, k, _lookup(data, arrays, k, graph), graph.tensors[k].shape)
             for k in graph.inputs}
    counts = {k: len(v) for k, v in feeds.items()}
    if len(set(counts.values())) != 1:
        raise GxnpucError(data, f"inputs have different sample counts {counts}", "one count for all")
    n = next(iter(counts.values()))
    _check_extra_arrays(data, arrays, graph)
    labels = _labels(data, arrays.get("labels"), n)
    _check_label_range(data, labels, graph)
    if samples:
        feeds = {k: v[:samples] for k, v in feeds.items()}
        labels = None if labels is None else labels[:samples]
    return feeds, labels, os.path.basename(data)


def _read_arrays(path: str, graph) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise ConfigError(path, "no such file", f"an .npz file ({NPZ_HINT}) or the word random")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for non-npz bytes
        raise GxnpucError(path, f"not a readable .npz file ({type(exc).__name__})", NPZ_HINT) from None
    if isinstance(loaded, np.ndarray):  # a bare .npy: fine for a one-input model
        if len(graph.inputs) != 1:
            raise GxnpucError(path, "is one array but the model has several inputs", NPZ_HINT)
        return {graph.inputs[0]: loaded}
    with loaded:
        try:
            return {k: loaded[k] for k in loaded.files}
        except ValueError as exc:  # object arrays: they would need unpickling, which is refused
            raise GxnpucError(path, f"holds arrays that are not plain numbers ({exc})", NPZ_HINT) from None


def _lookup(path: str, arrays: dict, name: str, graph) -> np.ndarray:
    """The array for input `name`; TF users may write the tensor name "x:0" for "x"."""
    for key in (name, name + ":0", name[:-2] if name.endswith(":0") else None):
        if key in arrays:
            return arrays[key]
    keys = ", ".join(sorted(arrays)) or "none"
    raise GxnpucError(path, f"no array for model input {name!r} (keys in the file: {keys})",
                      f"one array per input: {', '.join(graph.inputs)}; {NPZ_HINT}")


def _input_array(path: str, name: str, arr: np.ndarray, shape: tuple) -> np.ndarray:
    """[samples, *shape], also accepting [samples, *shape[1:]] when the batch dim is 1."""
    arr = np.asarray(arr)
    ok = arr.ndim == len(shape) + 1 and tuple(arr.shape[1:]) == tuple(shape)
    no_batch = (len(shape) >= 1 and shape[0] == 1 and arr.ndim == len(shape)
                and tuple(arr.shape[1:]) == tuple(shape[1:]))
    if not (ok or no_batch) or len(arr) == 0 or not np.issubdtype(arr.dtype, np.number):
        accepted = f"[samples, {', '.join(map(str, shape))}]"
        if no_batch or (len(shape) >= 1 and shape[0] == 1):
            accepted += f" or [samples, {', '.join(map(str, shape[1:]))}]"
        raise GxnpucError(f"{path}: {name}", f"has shape {list(arr.shape)} ({arr.dtype})",
                          f"numbers of shape {accepted}")
    arr = arr.astype(np.float32).reshape(len(arr), *shape)
    if not np.all(np.isfinite(arr)):
        raise GxnpucError(f"{path}: {name}", "holds NaN or Inf", "finite input values")
    return arr


def _check_extra_arrays(path: str, arrays: dict, graph) -> None:
    """An array that is neither an input nor `labels` is most likely a typo ('lables')."""
    known = {"labels"} | {v for k in graph.inputs for v in (k, k + ":0", k[:-2] if k.endswith(":0") else k)}
    extra = sorted(set(arrays) - known)
    if extra:
        raise GxnpucError(f"{path}: {extra[0]}", "is neither a model input nor `labels`",
                          f"arrays named {', '.join(graph.inputs)} and optionally labels")


def _check_label_range(path: str, labels, graph) -> None:
    """Class indices must index the classifier output (its last axis)."""
    if labels is None:
        return
    classes = int(graph.tensors[graph.outputs[0]].shape[-1])
    bad = labels[(labels < 0) | (labels >= classes)]
    if bad.size:
        raise GxnpucError(f"{path}: labels", f"holds class {int(bad[0])}, outside the output's "
                          f"{classes} classes", f"class indices 0..{classes - 1} (or one-hot rows)")


def _labels(path: str, labels, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim == 2 and len(labels) == n:  # one-hot
        return np.argmax(labels, axis=1)
    if labels.ndim == 1 and len(labels) == n and np.issubdtype(labels.dtype, np.number) \
            and np.all(labels == np.round(labels)):
        return labels.astype(np.int64)
    raise GxnpucError(f"{path}: labels", f"has shape {list(labels.shape)} ({labels.dtype})",
                      f"{n} integer class indices, or a one-hot array [{n}, classes]")


# -- runs -------------------------------------------------------------------------------------
@dataclass
class Runs:
    """Everything simulated once and reused by the per-weight sweep."""
    model: object
    samples: list[dict]  # per-sample feeds
    ref: dict  # framework outputs, [samples, *shape]
    float_envs: list[dict]  # float IR: the tensors the report needs
    npu_envs: list[dict]  # npu as compiled: the same tensors
    base_consts: dict  # npu constants with nothing compressed (compressed weights at fp16)
    base_envs: list[dict]  # npu with nothing compressed, what the sweep resumes from
    overflow: list = field(default_factory=list)  # tensors beyond the fp16 range in float


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, disable=None, unit="run")


def simulate(cfg, model, feeds: dict, bar, keep_all: bool = False) -> Runs:
    """Framework, float, npu and npu-without-compression runs of every sample.

    Each run keeps only the tensors the report needs (outputs, compressed layers' outputs,
    and what the sweep resumes from), or every tensor when keep_all (for --dump-dir).
    """
    g = model.graph
    samples = [sim.sample(g, feeds, i) for i in range(len(next(iter(feeds.values()))))]
    ref = oracle.run(cfg, g, feeds, progress=lambda: bar.update())
    weights = compressed_weights(model)
    base_c = dict(sim.model_consts(model, "npu"))
    for sw in weights:
        base_c[sw.name] = numerics.round_f16(_float_value(model, sw.name))
    report_keep = None if keep_all else set(g.outputs) | {_layer_output(g, sw.name) for sw in weights}
    first = min((first_reader(g, sw.name) for sw in weights), default=len(g.nodes))
    resume_keep = set(g.outputs) | {i for n in g.nodes[first:] for i in n.inputs if i}
    overflow: set[str] = set()

    def envs(consts, mode, keep):
        out = []
        cast = sim.model_cast(mode)
        for env in sim.run_samples(g, samples, consts, cast=cast, keep=True, progress=bar.update):
            env = sim.finish_outputs(model, env, mode)
            if mode == "float":
                overflow.update(k for k, v in env.items() if numerics.overflows(v))
            out.append(env if keep is None else {k: v for k, v in env.items() if k in keep})
        return out
    runs = Runs(model, samples, ref, envs(sim.model_consts(model, "float"), "float", report_keep),
                envs(sim.model_consts(model, "npu"), "npu", report_keep), base_c,
                envs(base_c, "npu", None if keep_all else resume_keep))
    runs.overflow = [o for n in g.nodes for o in n.outputs if o in overflow]
    return runs


def _layer_output(graph, weight: str) -> str:
    return graph.nodes[first_reader(graph, weight)].outputs[0]


def compressed_weights(model) -> list:
    """The compressed StoredWeights in graph order (the order `-w` prints)."""
    from gxnpuc.hist import compressed

    return compressed(model)


def _float_value(model, name: str) -> np.ndarray:
    data = model.graph.tensors[name].data
    if data is None:
        raise GxnpucError("--eval", f"weight {name!r} has no float value",
                          "evaluate a model compiled in memory, not one read from a file")
    return np.asarray(data, np.float32)


def first_reader(graph, name: str) -> int:
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
    return {k: eval_report.snr_db(runs.ref[k], outs[k]) for k in runs.model.graph.outputs}


# -- the report -------------------------------------------------------------------------------
def evaluate(cfg, model, feeds: dict, labels, source: str, dump_dir: str | None = None) -> dict:
    """Run everything and return the report dict (see docs/numerics.md for its fields)."""
    n, weights = len(next(iter(feeds.values()))), compressed_weights(model)
    with _progress(n * (4 + len(weights)), "eval") as bar:
        runs = simulate(cfg, model, feeds, bar, keep_all=bool(dump_dir))
        layers = [layer_row(cfg, runs, sw, bar) for sw in weights]
    layers.sort(key=lambda r: r["only_snr_db"])
    report = {"model": os.path.basename(cfg.model_path) or "?", "framework": oracle.name(cfg),
              "data": source, "samples": n, "threshold_db": float(cfg.eval_snr_threshold_db),
              "output_names": list(model.graph.outputs), "outputs": output_rows(runs, labels),
              "layers": layers, "notes": overflow_notes(runs)}
    if sequence.is_unrolled(model.graph):
        report["steps"] = sequence.step_rows(runs)
    from gxnpuc import eval_advice

    report["verdict"] = eval_advice.verdict(cfg, runs, report, _progress)
    if dump_dir:
        report["notes"].append(f"intermediate tensors written to {dump(runs, dump_dir)}")
    return report


def output_rows(runs: Runs, labels) -> list[dict]:
    rows = []
    modes = (("float", runs.float_envs), ("npu_fp16", runs.base_envs), ("npu", runs.npu_envs))
    for k in runs.model.graph.outputs:
        ref, shape = runs.ref[k], list(runs.model.graph.tensors[k].shape)
        if labels is not None:  # the framework's own accuracy, for scale
            rows.append({"output": k, "mode": "framework", "shape": shape, "snr_db": None,
                         "cosine": None, "max_abs_err": None, "top1_agreement": None,
                         "accuracy": eval_report.accuracy(ref, labels)})
        for mode, envs in modes:
            rows.append({"output": k, "mode": mode, "shape": shape,
                         **eval_report.compare(ref, stacked(envs, k), labels)})
    return rows


def layer_row(cfg, runs: Runs, sw, bar) -> dict:
    from gxnpuc.hist import outer_share, quant_range

    g = runs.model.graph
    node = g.nodes[first_reader(g, sw.name)]
    out = _layer_output(g, sw.name)
    w = _float_value(runs.model, sw.name)
    only = output_snrs(runs, outputs_with(runs, sw.name, numerics.stored_values(sw), bar))
    q_lo, q_hi = quant_range(sw)
    half = float(np.max(np.asarray(sw.step_f16, np.float64))) / 2
    clip = getattr(sw, "clip", None) or dict(cfg.weight_min_max or {}).get(sw.name)
    return {"weight": sw.name, "shape": [int(d) for d in sw.shape], "layer": node.name,
            "layer_output": out,
            "layer_snr_db": eval_report.snr_db(stacked(runs.float_envs, out), stacked(runs.npu_envs, out)),
            "only_snr_db": min(only.values()), "only_snr_by_output": only,
            "w_min": float(w.min()), "w_max": float(w.max()), "q_lo": q_lo, "q_hi": q_hi,
            "clip": None if clip is None else [float(clip[0]), float(clip[1])],
            "clipped_share": float(np.mean((w < q_lo - half) | (w > q_hi + half))),
            "tail_share": outer_share(w)}


def overflow_notes(runs: Runs) -> list[str]:
    """Name tensors whose float values exceed the fp16 range (the device saturates to inf)."""
    names = runs.overflow
    if not names:
        return []
    return [f"{len(names)} tensor(s) exceed the fp16 range ±{numerics.F16_MAX:g} in float: "
            + ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")]


def dump(runs: Runs, folder: str) -> str:
    """One .npy per tensor per mode ([samples, *shape]) in folder/<mode>/, plus index.json."""
    from gxnpuc.hist import safe_names

    g = runs.model.graph
    names = list(g.inputs) + [o for n in g.nodes for o in n.outputs]
    files = {k: v[:-4] + ".npy" for k, v in safe_names(names).items()}
    try:
        for mode, envs in (("float", runs.float_envs), ("npu", runs.npu_envs)):
            os.makedirs(os.path.join(folder, mode), exist_ok=True)
            for k in names:
                np.save(os.path.join(folder, mode, files[k]), stacked(envs, k))
        os.makedirs(os.path.join(folder, "framework"), exist_ok=True)
        for k in g.outputs:
            np.save(os.path.join(folder, "framework", files[k]), runs.ref[k])
        with open(os.path.join(folder, "index.json"), "w", encoding="utf-8") as fh:
            json.dump({"files": files, "order": names}, fh, indent=1)
    except OSError as exc:
        raise OutputError(folder, f"cannot write the dump ({exc.strerror or exc})",
                          "a writable folder for --dump-dir") from None
    return folder
