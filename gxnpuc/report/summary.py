"""What the user reads after a compile: the summary, `-w`, `-v`, `-m` and `-L` text.

Every function only reads what the compiler stages recorded in the CompiledModel (graph,
weights, plan, sizes) or in the op registry; none of them changes anything. The `-s`
histograms live in gxnpuc/report/hist.py.
"""
from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import numpy as np

from gxnpuc.tables import markdown_table, text_table

if TYPE_CHECKING:
    from gxnpuc.config import Config
    from gxnpuc.model import CompiledModel


CORES = ("GRUS",)


# -- small text helpers ----------------------------------------------------------------------
def _n(x) -> str:
    return f"{int(x):,}"


def _shape(s) -> str:
    return "x".join(str(d) for d in s) if s else "scalar"


# -- -w -------------------------------------------------------------------------------------
def weight_lines(model: CompiledModel) -> list[str]:
    """`name: [d0, d1, ...]` for every compressed weight, in graph order (SPEC 2)."""
    return [f"{sw.name}: {[int(d) for d in sw.shape]}" for sw in model.compressed_weights()]


def folded_lines(model: CompiledModel) -> list[str]:
    """After the -w list, one YAML comment per listed weight FUSE_BN folded a BatchNorm into
    (WEIGHT_MIN_MAX applies to its folded values); the list lines themselves stay `name: [...]`."""
    folded = model.graph.meta.get("folded", {})
    return [f"# {sw.name}: folded: BatchNorm {folded[sw.name]}; WEIGHT_MIN_MAX applies to the folded values"
            for sw in model.compressed_weights() if sw.name in folded]


# -- the compile summary ------------------------------------------------------------------------
def _target_limit(model: CompiledModel) -> int | None:
    """Bytes of memory the target offers, from the backend's target table (None if unknown)."""
    if "limit" in model.sizes:
        return int(model.sizes["limit"])
    from gxnpuc import targets

    t = targets.TARGETS.get(model.corename)
    return None if t is None else int(t.memory_bytes)


def _fit_line(model: CompiledModel) -> str:
    total, limit = model.sizes.get("total_size"), _target_limit(model)
    if total is None or limit is None:
        return "  memory          (target limit unknown)"
    if total <= limit:
        return f"  memory          fits {model.corename}: {_n(total)} of {_n(limit)} B ({total / limit:.0%})"
    return (f"WARNING: the model needs {_n(total)} B but {model.corename} has {_n(limit)} B "
            f"({_n(total - limit)} B over): compress more weights (COMPRESS, CONV2D_COMPRESS) "
            f"or shrink the model")


def weight_stats(model: CompiledModel) -> dict:
    """Counts and bytes of the stored weights, before (fp32) and after compression."""
    ws = list(model.weights.values())
    return {"tensors": len(ws), "values": sum(int(np.prod(w.shape, dtype=np.int64)) for w in ws),
            "compressed": sum(1 for w in ws if w.compressed),
            "fp32": sum(int(w.nbytes_fp32) for w in ws), "stored": sum(int(w.nbytes_stored) for w in ws)}


SIZE_PARTS = {"npu_size": ("cmd", "weight", "ops", "data", "tmp"), "total_size": ("npu_size", "io")}


def _size_lines(sz: dict) -> list[str]:
    """One line per section size; the two totals say what they add up."""
    lines = []
    for key in ("cmd", "weight", "data", "npu_size", "total_size"):
        if key not in sz:
            continue
        parts = [p for p in SIZE_PARTS.get(key, ()) if p in sz]
        tail = "  = " + " + ".join(f"{p} {_n(sz[p])}" for p in parts) if parts else ""
        lines.append(f"  {key:<15} {_n(sz[key])} B{tail}")
    return lines


def summary(model: CompiledModel, cfg: Config) -> str:
    """The short report printed after every successful compile."""
    g, st, sz = model.graph, weight_stats(model), model.sizes
    from gxnpuc.config import display_path

    src = display_path(cfg.model_path or g.meta.get("source", "?"))
    ratio = f" ({st['fp32'] / st['stored']:.1f}x smaller)" if st["stored"] else ""
    npu_ops = sum(1 for n in g.nodes if n.op != "identity")
    fw = g.meta.get("framework", "?") + (f" opset {g.meta['opset']}" if g.meta.get("opset") else "")
    lines = [f"gxnpuc: {src} ({fw}) -> {display_path(cfg.output_file)}",
             f"  target          {model.corename} ({model.npu_unit})",
             f"  npu ops         {npu_ops}",
             f"  weights         {st['tensors']} tensors, {_n(st['values'])} values, "
             f"{st['compressed']} compressed to 8 bit",
             f"  weight bytes    {_n(st['fp32'])} as fp32 -> {_n(st['stored'])} stored{ratio}"]
    lines += _size_lines(sz)
    lines.append(_fit_line(model))
    from gxnpuc import state

    lines += state.summary_lines(g)
    lines += [f"note: {n}" for n in g.meta.get("notes", [])]
    return "\n".join(lines)


# -- -v ---------------------------------------------------------------------------------------
def _node_row(model: CompiledModel, node) -> list:
    from gxnpuc.ops import REGISTRY

    g = model.graph
    in_shapes = [g.tensors[i].shape if i else None for i in node.inputs]
    out_shapes = [g.tensors[o].shape for o in node.outputs]
    consts = [i for i in node.inputs if i and g.tensors[i].is_const]
    acts = [g.tensors[i].shape for i in node.inputs if i and not g.tensors[i].is_const]
    n_w = sum(g.tensors[i].size for i in consts)
    w_bytes = sum(int(model.weights[i].nbytes_stored) for i in consts if i in model.weights)
    flops = REGISTRY[node.op].flops(node, in_shapes, out_shapes)
    return [node.name, node.op, node.source, " ".join(_shape(s) for s in acts),
            " ".join(_shape(s) for s in out_shapes), n_w, int(flops), w_bytes]


def op_table(model: CompiledModel) -> str:
    """Per op: name, NPU op, source op, shapes, weight count, FLOPs, stored weight bytes."""
    rows = [_node_row(model, n) for n in model.graph.nodes]
    total = ["total", "", "", "", ""] + [sum(r[k] for r in rows) for k in (5, 6, 7)]
    rows = [r[:5] + [_n(x) for x in r[5:]] for r in rows + [total]]
    return text_table(["name", "npu op", "source", "input", "output", "weights", "FLOPs", "w bytes"],
                  rows, right={5, 6, 7})


# -- -m ---------------------------------------------------------------------------------------
REGION_ORDER = {"io": 0, "data": 1, "weight": 2}


def _kind(model: CompiledModel, name: str, region: str) -> str:
    from gxnpuc import state

    g = model.graph
    streaming = state.kind(g, name)
    if streaming:
        return streaming
    if region == "weight" or name in model.weights:
        sw = model.weights.get(name)
        return "weight 8-bit" if sw is not None and sw.compressed else "weight fp16"
    if name in g.inputs:
        return "input"
    return "output" if name in g.outputs else "activation"


def mem_table(model: CompiledModel) -> str:
    """Every planned buffer: struct in_out (io), activations (data), weights, by offset."""
    plan, g = model.plan, model.graph
    places, regions = plan.get("tensors", {}), plan.get("region", {})
    order = sorted(places, key=lambda n: (REGION_ORDER.get(regions.get(n, ""), 3), places[n][0], n))
    rows = [[regions.get(n, "?"), _kind(model, n, regions.get(n, "")), n,
             _shape(g.tensors[n].shape) if n in g.tensors else "", _n(places[n][0]), _n(places[n][1])]
            for n in order]
    table = text_table(["region", "kind", "tensor", "shape", "offset", "bytes"], rows, right={4, 5})
    keys = ("cmd", "weight", "ops", "data", "tmp", "io", "npu_size", "total_size", "limit")
    sizes = ", ".join(f"{k} {_n(model.sizes[k])}" for k in keys if k in model.sizes)
    peak = f"; activations alive at once at most {_n(plan['peak_live'])} B" if "peak_live" in plan else ""
    from gxnpuc import state

    return "\n".join([f"{table}\nsizes (bytes): {sizes}{peak}", *state.summary_lines(g)[1:]])


# -- -L ---------------------------------------------------------------------------------------
def _lowering_row(framework: str, op_type: str) -> list[str]:
    """[op type, NPU ops, summary, constraints] from the `emits=` its lowering declares."""
    from gxnpuc.ops import REGISTRY
    from gxnpuc.ops.base import LOWERING_EMITS, UNDECLARED, NoNpuOp

    emits = LOWERING_EMITS.get((framework, op_type), UNDECLARED)
    if isinstance(emits, NoNpuOp):
        return [op_type, "-", emits.summary, emits.constraint]
    if not emits:
        return [op_type, "-", "no NPU op (folded at compile time, or a no-op)", ""]
    npu = [o for o in emits if REGISTRY[o].npu]
    fold = [o for o in emits if not REGISTRY[o].npu]  # run only on constants, at compile time
    shown = npu or fold
    summary = "; ".join(REGISTRY[o].summary for o in shown)
    cons = [c for o in shown for c in REGISTRY[o].constraints]
    if fold:
        folded = "constant inputs only (folded at compile time)"
        cons = cons + [", ".join(fold) + ": " + folded] if npu else [folded] + cons
    return [op_type, ", ".join(emits), summary, "; ".join(cons)]


def _lowering_rows(framework: str, table: dict) -> list[list[str]]:
    return [_lowering_row(framework, t) for t in sorted(table, key=str.lower)]


def _npu_rows() -> list[list[str]]:
    from gxnpuc.ops import REGISTRY

    return [[d.name, d.category + ("" if d.npu else " (fold only)"), d.summary, "; ".join(d.constraints)]
            for d in sorted(REGISTRY.values(), key=lambda d: (not d.npu, d.category, d.name))]


def _markdown(core: str, sections: list) -> str:
    parts = [f"# Supported ops ({core})", "",
             "Generated from the op registry by `gxnpuc -L --markdown` (`make docs`); do not edit.",
             "The constraint texts are the same ones compile errors quote.", ""]
    heads = ["npu op", "summary", "constraints"]
    for title, col, framework, table in sections:
        rows = _lowering_rows(framework, table)
        parts += [f"## {title} ({len(table)} op types)", "", markdown_table([col] + heads, rows), ""]
    npu = markdown_table(["npu op", "category", "summary", "constraints"], _npu_rows())
    return "\n".join(parts + ["## NPU IR ops", "", npu, ""])


def _text(core: str, sections: list) -> str:
    parts = [f"supported ops for {core}"]
    for title, col, framework, table in sections:
        # no NPU op: say why (not supported, a no-op, folded), as the markdown table does
        rows = [[r[0], r[1] if r[1] != "-" else f"- {r[2]}"] for r in _lowering_rows(framework, table)]
        parts += ["", f"{title} ({len(rows)} op types):", text_table([col, "npu op"], rows)]
    parts += ["", "NPU ops:", text_table(["npu op", "category", "summary / constraints"], _npu_text_rows())]
    return "\n".join(parts)


def ir_table() -> str:
    """The op table of docs/ir.md, from the registry (OpDef.ir_inputs, ir_attrs, weights)."""
    from gxnpuc.ops import REGISTRY

    rows = []
    for name, op in REGISTRY.items():
        if op.npu:
            roles = op.ir_roles or ", ".join(f"{i}: {r}" for i, r in op.weights.items()) or "—"
            rows.append([f"`{name}`", op.ir_inputs, op.ir_attrs or "—", roles])
    fold = ", ".join(f"`{n}`" for n, op in REGISTRY.items() if not op.npu)
    rows.append([f"fold-only (`npu = False`): {fold} (gxnpuc/ops/fold.py)", "",
                 "exist so constant subgraphs fold; one left after the passes is reported by "
                 "`compiler.reject_leftovers(graph)`", "—"])
    return markdown_table(["op", "inputs", "attrs", "weight roles"], rows)


IR_BEGIN, IR_END = "<!-- BEGIN ops: generated by python -m gxnpuc.report docs/ir.md -->", "<!-- END ops -->"


def update_ir_doc(path: str) -> None:
    """Rewrite the op table between the markers of docs/ir.md."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    before, rest = text.split(IR_BEGIN, 1)
    _, after = rest.split(IR_END, 1)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"{before}{IR_BEGIN}\n{ir_table()}\n{IR_END}{after}")


def _npu_text_rows() -> list[list[str]]:
    rows = []
    for name, cat, summary, cons in _npu_rows():
        lines = textwrap.wrap(summary, 78) + textwrap.wrap(cons and "accepts: " + cons, 78)
        rows += [[name, cat, lines[0] if lines else ""]] + [["", "", ln] for ln in lines[1:]]
    return rows


def list_ops(core: str = "GRUS", framework: str | None = None, markdown: bool = False) -> str:
    """Supported ops: each framework op type -> the NPU ops its lowering declares (`emits=`),
    with their summaries and constraints from the op registry."""
    from gxnpuc.errors import ConfigError
    from gxnpuc.ops import ONNX_LOWERINGS, TF_LOWERINGS, TFLITE_LOWERINGS

    core = (core or "GRUS").upper()
    if core not in CORES:
        raise ConfigError("-c", f"unknown core {core!r}", "one of: " + ", ".join(CORES))
    fw = (framework or "").upper()
    if fw not in ("", "ONNX", "TF", "TENSORFLOW", "PT", "PYTORCH", "TFLITE"):
        raise ConfigError("-f", f"unknown framework {framework!r}", "TF, ONNX, PT or TFLITE")
    sections = [("ONNX", "ONNX op", "onnx", ONNX_LOWERINGS),
                ("TensorFlow", "TensorFlow op", "tf", TF_LOWERINGS),
                ("TensorFlow Lite", "TFLite op", "tflite", TFLITE_LOWERINGS)]
    if fw in ("PT", "PYTORCH"):
        return _pytorch(core, [sections[0]], markdown)
    key = {"ONNX": "onnx", "TF": "tf", "TENSORFLOW": "tf", "TFLITE": "tflite"}.get(fw, "")
    sections = [s for s in sections if not key or s[2] == key]
    return _markdown(core, sections) if markdown else _text(core, sections)


def _pytorch(core: str, onnx_section: list, markdown: bool) -> str:
    """-L -f PT: the intro line, PyTorch layers -> the ONNX ops they export to, then the ONNX ops."""
    from gxnpuc.report.pytorch import INTRO, rows

    heads = ["PyTorch layer", "ONNX ops (torch.onnx.export)", "npu ops"]
    if markdown:
        return "\n".join([f"# PyTorch models ({core})", "", INTRO, "", markdown_table(heads, rows(_lowering_row)), "",
                          _markdown(core, onnx_section).split("\n", 1)[1]])
    return "\n".join([INTRO, "", text_table(heads, rows(_lowering_row)), "", _text(core, onnx_section)])
