"""Streaming state (`STATE_OPS`): which graph output is the next value of which graph input.

`find(cfg, graph)` gives the pairs {state output: state input}: the config's STATE_OPS when
given (names resolved like OUTPUT_OPS / INPUT_OPS, shapes checked; `STATE_OPS: {}` turns
pairing off), else the pairs the model makes unambiguous: `graph.meta["state_pairs"]` set by
a front end (TFLite resource variables), or an output whose name is an input's name with a
state suffix (`State_c0` -> `State_c0_out`, `_next`, `_new`; `state` -> `stateN`; `h0` -> `hn`)
and whose shape is that input's, when no other input or output claims the same partner.

`apply(cfg, graph)` puts the vendor layout into the graph: the state inputs go last in
`struct input` (in the order of the inputs), the state outputs first in `struct output` in the
same order, then the other outputs. The NPU then writes `struct output` at the first state input
of the next `struct in_out` buffer, so each state output lands in its state input for the next
step and `struct in_out` holds the inputs and only the non-state outputs. State outputs are
fp16 (they land in fp16 inputs). The pairs go to `graph.meta["state_pairs"]` (kept in the
output file), which the memory plan, the header, the reports and `--eval` read.
"""
from __future__ import annotations

import dataclasses
import re

from gxnpuc.errors import ConfigError
from gxnpuc.ir import Graph

KEY = "STATE_OPS"
META = "state_pairs"
_SUFFIXES = ("_out", "_next", "_new", "_output", "out", "next", "n", "_n")
_PREFIXES = ("next_", "new_")


def pairs_of(graph: Graph) -> dict[str, str]:
    """The applied pairs {state output: state input} of a compiled graph ({} when none), in
    the order of graph.outputs (a decoded file keeps the pairs in a sorted dict)."""
    pairs = graph.meta.get(META) or {}
    return {o: pairs[o] for o in graph.outputs if o in pairs}


# -- finding the pairs ---------------------------------------------------------------------------
def _norm(name: str) -> str:
    return name.removesuffix(":0").lower()


def _next_names(name: str) -> set[str]:
    """Spellings a state output of input `name` may have (lower case)."""
    base = _norm(name)
    stems = {base, re.sub(r"(_?0|_?in|_prev)$", "", base)}
    return ({s + x for s in stems if s for x in _SUFFIXES} | {p + base for p in _PREFIXES}) - {base}


def infer(graph: Graph) -> dict[str, str]:
    """Pairs the model makes unambiguous: a front end's, else matching names and shapes."""
    given = {o: i for o, i in (graph.meta.get(META) or {}).items()
             if o in graph.outputs and i in graph.inputs}
    if given:
        return given
    def shape(n: str) -> tuple:
        return tuple(graph.tensors[n].shape)
    cands = {o: [i for i in graph.inputs if _norm(o) in _next_names(i) and shape(i) == shape(o)]
             for o in graph.outputs if o not in graph.inputs}
    taken = [i for c in cands.values() for i in c]
    return {o: c[0] for o, c in cands.items() if len(c) == 1 and taken.count(c[0]) == 1}


def find(cfg, graph: Graph) -> dict[str, str]:
    """The pairs: STATE_OPS resolved and checked, or inferred when the key is not given."""
    if cfg.state_ops is None:
        return infer(graph)
    from gxnpuc.config import names

    out: dict[str, str] = {}
    for o_name, i_name in cfg.state_ops.items():
        o = names.io_name(graph, o_name, graph.outputs)
        if o is None:
            what = "is not an output of the model" + ("; list state outputs in OUTPUT_OPS too"
                                                       if cfg.output_ops else "")
            raise names.locate(cfg, names.unknown(KEY, o_name, graph.outputs, what,
                                                  "model outputs: " + ", ".join(graph.outputs[:8])))
        i = names.io_name(graph, i_name, graph.inputs)
        if i is None:
            raise names.locate(cfg, names.unknown(KEY, i_name, graph.inputs, "is not an input of the model",
                                                  "model inputs: " + ", ".join(graph.inputs[:8])))
        _check_pair(cfg, graph, o_name, o, i, out)
        out[o] = i
    return out


def _check_pair(cfg, graph: Graph, o_name: str, o: str, i: str, done: dict) -> None:
    from gxnpuc.config import where

    at = where(cfg, KEY, o_name)
    so, si = list(graph.tensors[o].shape), list(graph.tensors[i].shape)
    if so != si:
        raise ConfigError(at, f"state output {o!r} has shape {so} but its state input {i!r} has {si}",
                          "pair an output with the input of the same shape it feeds at the next step")
    if i in done.values():
        other = next(k for k, v in done.items() if v == i)
        raise ConfigError(at, f"state input {i!r} is fed by both {other!r} and {o!r}",
                          "one state output per state input")
    if o == i:
        raise ConfigError(at, f"{o!r} is both the state output and its input", "an output and another input")


# -- the vendor layout -------------------------------------------------------------------------
def apply(cfg, graph: Graph):
    """Order the graph's inputs/outputs in the vendor layout, record the pairs; returns cfg
    with the state outputs added to FP16_OUT_OPS (the layout needs them in fp16)."""
    pairs = find(cfg, graph)
    graph.meta.pop(META, None)
    if not pairs:
        return cfg
    by_input = {i: o for o, i in pairs.items()}
    state_ins = [i for i in graph.inputs if i in by_input]
    ordered = {by_input[i]: i for i in state_ins}
    graph.inputs = [i for i in graph.inputs if i not in by_input] + state_ins
    graph.outputs = list(ordered) + [o for o in graph.outputs if o not in ordered]
    graph.meta[META] = ordered
    extra = tuple(o for o in ordered if o not in cfg.fp16_out_ops)
    return dataclasses.replace(cfg, fp16_out_ops=tuple(cfg.fp16_out_ops) + extra) if extra else cfg


def summary_lines(graph: Graph) -> list[str]:
    """The summary's streaming-state lines (none for a model without state)."""
    pairs = pairs_of(graph)
    if not pairs:
        return []
    listed = ", ".join(f"{o} -> {i}" for o, i in pairs.items())
    return [f"  state           {len(pairs)} pair(s), output -> next step's input: {listed}",
            ("  struct in_out   vendor streaming layout: inputs (state last), then the non-state "
             "outputs; the NPU writes struct output (state outputs first, fp16) at the first state "
             "input of the next buffer (output_offset)")]


def kind(graph: Graph, name: str) -> str | None:
    """`-m`'s kind of a state input / output, None for other tensors."""
    pairs = pairs_of(graph)
    if name in pairs:
        return f"state out -> {pairs[name]} (next buffer)"
    if name in pairs.values():
        return "state input"
    return None
