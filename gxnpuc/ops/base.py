"""The op registry: one OpDef per NPU op, plus the framework lowerings that produce it.

An op file defines a subclass of OpDef decorated with @register, and lowering functions
decorated with @onnx_lowering("OnnxType", ..., emits=("op", ...)) / @tf_lowering(...) /
@tflite_lowering("BUILTIN_NAME" or a custom op's code, ...). `emits`
declares the IR ops the function can emit (or what happens instead: ALIAS, CONSTANT, ...);
`gxnpuc -L` reads it from LOWERING_EMITS. The same `constraints` text is shown by `gxnpuc -L`
and used in error messages, so it is written once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

REGISTRY: dict[str, "OpDef"] = {}
ONNX_LOWERINGS: dict[str, Callable] = {}
TF_LOWERINGS: dict[str, Callable] = {}
TFLITE_LOWERINGS: dict[str, Callable] = {}


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

    def infer(self, node, in_shapes: list[tuple]) -> list[tuple]:
        """Output shapes from input shapes. Default: run the kernel on zeros (cheap ops only)."""
        xs = [np.zeros(s, np.float32) for s in in_shapes]
        return [tuple(y.shape) for y in self.run(node, xs)]

    def run(self, node, xs: list[np.ndarray]) -> list[np.ndarray]:
        """The float kernel, used by the simulator and by constant folding."""
        raise NotImplementedError(self.name)

    def check(self, node, in_shapes: list[tuple]) -> str | None:
        """Why the NPU cannot run this node (one phrase), or None when it can."""
        return None

    def flops(self, node, in_shapes: list[tuple], out_shapes: list[tuple]) -> int:
        """Arithmetic operations per inference (a MAC counts as 2)."""
        return int(sum(np.prod(s, dtype=np.int64) for s in out_shapes))


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
