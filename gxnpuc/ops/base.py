"""The op registry: one OpDef per NPU op, plus the framework lowerings that produce it.

An op file defines a subclass of OpDef decorated with @register, and lowering functions
decorated with @onnx_lowering("OnnxType", ..., emits=("op", ...)) / @tf_lowering(...) /
@tflite_lowering("BUILTIN_NAME" or a custom op's code, ...). `emits`
declares the IR ops the function can emit (or what happens instead: ALIAS, CONSTANT, ...);
`gxnpuc -L` reads it from LOWERING_EMITS. The same `constraints` text is shown by `gxnpuc -L`
and used in error messages, so it is written once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from gxnpuc.ir import OPS

REGISTRY: dict[str, "OpDef"] = OPS  # the IR's op table, filled by @register
ONNX_LOWERINGS: dict[str, Callable] = {}
TF_LOWERINGS: dict[str, Callable] = {}
TFLITE_LOWERINGS: dict[str, Callable] = {}
# why an op with `npu = False` (a fold-only op) cannot stay in a compiled graph
FOLD_ONLY = "only supported when its inputs are constant (shape arithmetic)"


@dataclass
class SubNode:
    """The framework-node fields a lowering reads (frontend.common.FNode's shape): what a
    lowering builds to lower part of its op through another op's registered lowering."""
    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class NoNpuOp:
    """`emits=` of a lowering that emits no IR op: what happens instead, as `gxnpuc -L` says it."""
    summary: str
    constraint: str = ""


ALIAS = NoNpuOp("no-op (the output is the input)")
CONSTANT = NoNpuOp("computed at compile time (becomes a constant)")
FRONT_END = NoNpuOp("no NPU op: handled by the front end (graph inputs, control edges)")
# the default: a lowering that does not say what it emits (tests/test_report.py catches it)
UNDECLARED = NoNpuOp("emits not declared", "a gxnpuc bug: the lowering's decorator lacks emits=")


def unsupported(reason: str) -> NoNpuOp:
    """`emits=` of a lowering that always rejects; pass the same text to ctx.reject()."""
    return NoNpuOp("not supported", reason)


# (framework "onnx" | "tf" | "tflite", op type) -> the IR op names its lowering can emit, main op first
# (() = none), or a NoNpuOp saying what happens instead
LOWERING_EMITS: dict[tuple[str, str], tuple[str, ...] | NoNpuOp] = {}


class OpDef:
    """Semantics of one NPU op. Subclasses override what differs from these defaults."""

    name: str = ""
    category: str = ""  # conv | fc | elementwise | activation | pooling | reduction | data | norm | fold
    summary: str = ""  # one line for docs and -L
    constraints: tuple[str, ...] = ()  # what the NPU accepts; shown by -L and in errors
    # input index -> role: "conv"/"fc" are compressible weights, "bias" and "param" stay fp16
    weights: dict[int, str] = {}
    # False for ops that exist only to be folded away (Shape, Gather on constants, ...)
    npu: bool = True
    # passes/sink_moves.py: "move" for reshape / transpose (moved across element-wise ops until
    # inverse pairs cancel); "elementwise" for ops a move may cross at the inputs `sink_inputs`;
    # "rows" for ops it may cross only when it keeps the last axis (fc: one row at a time)
    sink: str = ""
    sink_inputs: tuple[int, ...] = ()
    # the op table of docs/ir.md (python -m gxnpuc.report docs/ir.md): inputs, attrs, and how
    # constant inputs are stored where `weights` does not say it all
    ir_inputs: str = ""
    ir_attrs: str = ""
    ir_roles: str = ""

    def infer(self, node, in_shapes: list) -> list[tuple]:
        """Output shapes from input shapes. Default: run the kernel on zeros (cheap ops only)."""
        xs = [np.zeros(s, np.float32) for s in in_shapes]
        return [tuple(y.shape) for y in self.run(node, xs)]

    def run(self, node, xs: list[np.ndarray]) -> list[np.ndarray]:
        """The float kernel, used by the simulator and by constant folding."""
        raise NotImplementedError(self.name)

    def run_npu(self, node, xs: list[np.ndarray]) -> list[np.ndarray]:
        """The device kernel (the simulator's npu mode): float32 in exactly the operation
        order docs/numerics.md defines, on fp16-valued float32 inputs; the simulator rounds
        the outputs to fp16. Default: run(), for ops whose float kernel already is that
        (moves, selections, one float32 operation per element)."""
        return self.run(node, xs)

    def check(self, node, in_shapes: list) -> str | None:
        """Why the NPU cannot run this node (one phrase), or None when it can."""
        return None

    def flops(self, node, in_shapes: list, out_shapes: list) -> int:
        """Arithmetic operations per inference (a MAC counts as 2)."""
        return int(sum(np.prod(s, dtype=np.int64) for s in out_shapes))

    def keeps_f16(self, node) -> bool:
        """True when rounding the node's outputs to fp16 changes nothing, given fp16 inputs: its
        outputs hold only values of its inputs (data movement, ReLU, max), so the simulator's npu
        mode may skip the rounding (numerics.keeps_f16)."""
        return False

    def batch(self, node, in_shapes: list, flags: list[bool]):
        """How the node runs n samples stacked on axis 0 (gxnpuc/batching.py), flags[i] telling
        whether input i carries samples: None (as it is), fn(n) -> attr updates for the batched
        copy, or why it cannot (a str: the simulator then runs one sample at a time)."""
        return "no batching rule for this op"


def is_f16(value) -> bool:
    """The float32 value is exactly an fp16 value."""
    v = np.float32(value)
    with np.errstate(over="ignore"):
        return bool(v == np.float16(v))


# -- batch rules several ops share (OpDef.batch) --------------------------------------------------
BATCH_ATTR = "sim_batch"  # set on the simulator's batched copy only: fc / matmul run per sample


def batch_per_sample(node, shapes, flags):
    """Each sample computed on its own, as long as only the data input carries samples."""
    if any(flags[1:]):
        return "a parameter input depends on the sample"
    return None


def batch_not_axis_0(node, shapes, flags):
    return batch_per_sample(node, shapes, flags) or ("works along axis 0" if node.attrs.get("axis") == 0 else None)


def batch_broadcast(node, shapes, flags):
    rank = len(np.broadcast_shapes(*[s for s in shapes if s is not None]))
    if any(f and len(s) != rank for s, f in zip(shapes, flags)):
        return "broadcasting moves the batch axis away from axis 0"
    return None


def batch_hint(n: int) -> dict:
    """The attr that makes fc / matmul make the BLAS call of a batch-1 run once per sample."""
    return {BATCH_ATTR: n}


def register(cls: type[OpDef]) -> type[OpDef]:
    """Class decorator: add one instance of the op to REGISTRY under cls.name."""
    assert cls.name and cls.name not in REGISTRY, cls.name
    REGISTRY[cls.name] = cls()
    return cls


def _lowering(framework: str, table: dict, types: tuple[str, ...], emits):
    names_ok = isinstance(emits, tuple) and all(isinstance(e, str) for e in emits)
    assert names_ok or isinstance(emits, NoNpuOp), f"emits of {types}: a tuple of IR op names"

    def deco(fn: Callable) -> Callable:
        for t in types:
            assert t not in table, f"two lowerings for {t}"
            table[t] = fn
            LOWERING_EMITS[(framework, t)] = emits
        return fn
    return deco


def onnx_lowering(*op_types: str, emits: tuple[str, ...] | NoNpuOp = UNDECLARED):
    """Decorator: fn(ctx: LowerCtx, fnode: FNode) lowers these ONNX op types into `emits`."""
    return _lowering("onnx", ONNX_LOWERINGS, op_types, emits)


def tf_lowering(*op_types: str, emits: tuple[str, ...] | NoNpuOp = UNDECLARED):
    """Decorator: fn(ctx: LowerCtx, fnode: FNode) lowers these TensorFlow op types into `emits`."""
    return _lowering("tf", TF_LOWERINGS, op_types, emits)


def tflite_lowering(*op_types: str, emits: tuple[str, ...] | NoNpuOp = UNDECLARED):
    """Decorator: fn(ctx, fnode) lowers these TFLite builtin ops (CONV_2D, ...) or custom
    codes into `emits`; fnode.attrs are the op's options (snake_case, enums by name)."""
    return _lowering("tflite", TFLITE_LOWERINGS, op_types, emits)


def emit_checked(ctx, op: str, inputs: list[str], outputs: list[str] | None = None,
                 attrs: dict | None = None, **kw) -> list[str] | None:
    """ctx.emit() after the op's own check(): a node it refuses is rejected with check's
    reason instead (nothing emitted), so lowering goes on and lists it with the others."""
    from gxnpuc.ir import Node

    shapes = [ctx.shape(i) if i else None for i in inputs]
    probe = Node(ctx.fnode.name if ctx.fnode else op, op, list(inputs), list(outputs or []),
                 dict(attrs or {}))
    reason = REGISTRY[op].check(probe, shapes)
    if reason:
        ctx.reject(reason)
        return None
    return ctx.emit(op, inputs, outputs, attrs, **kw)
