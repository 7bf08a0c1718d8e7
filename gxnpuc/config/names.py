"""Names the user writes in config.yaml, resolved against the model; unknown ones are errors.

A name in EXCLUDE_COMPRESS_OPS, EXCLUDE_CONV2D_COMPRESS_OPS or WEIGHT_MIN_MAX is a weight
name as `gxnpuc -w` prints it (the constant tensor's name) or the name of the node that
uses the weight. Names the framework had but lowering or a pass folded or renamed are
followed through `graph.meta["aliases"]` (old name -> names it became), which front ends
and passes keep with `Graph.record_alias()`.

This is the only code that matches a user's name to a weight or output: `resolve()` turns the
config's names into the tensor names they select, and every later stage reads those.
"""
from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING

from gxnpuc import config
from gxnpuc.errors import ConfigError
from gxnpuc.ir import Graph

if TYPE_CHECKING:
    from gxnpuc.config import Config

COMPRESSIBLE = ("conv", "fc")  # weight roles that compression applies to (ops/base.py)
WEIGHT_KEYS = ("EXCLUDE_COMPRESS_OPS", "EXCLUDE_CONV2D_COMPRESS_OPS", "WEIGHT_MIN_MAX")


def _roles(graph: Graph) -> dict[str, set[str]]:
    """Constant tensor consumed by a node -> the roles it plays ("conv", "fc", "bias", ...)."""
    roles: dict[str, set[str]] = {}
    for node, i, family in graph.weight_slots():
        roles.setdefault(node.inputs[i], set()).add(family)
    return roles


def _node_weights(graph: Graph, node, roles: dict) -> list[str]:
    consts = [i for i in node.inputs if i in roles]
    main = [i for k, i in enumerate(node.inputs) if i in roles and _slot_role(node, k) in COMPRESSIBLE]
    return list(dict.fromkeys(main or consts))


def _slot_role(node, index: int) -> str:
    from gxnpuc.ops import REGISTRY

    return REGISTRY[node.op].weights.get(index, "param")


def _direct(graph: Graph, name: str, roles: dict) -> list[str]:
    if name in roles:
        return [name]
    node = graph.node(name)
    return _node_weights(graph, node, roles) if node is not None else []


_CF = re.compile(r"/_\d+__cf__\d+$")  # TF session constant folding: `X/_11__cf__11` replaces X


def _spellings(name: str) -> list[str]:
    """The name, its TensorFlow node name when written as output 0 (`dense/kernel:0`), and the
    name without the suffix a TF1 session's constant folding gives a folded constant
    (`.../ExpandDims_1/_11__cf__11` -> `.../ExpandDims_1`)."""
    out = [name, name[:-2]] if name.endswith(":0") else [name]
    return list(dict.fromkeys(out + [_CF.sub("", n) for n in out]))


def _cf_forms(graph: Graph, names: list[str]) -> list[str]:
    """Graph names that are a session-folded spelling (`X/_7__cf__7`) of one of `names`."""
    wanted = set(names)
    pool = list(graph.tensors) + [n.name for n in graph.nodes]
    return [p for p in dict.fromkeys(pool) if "__cf__" in p and _CF.sub("", p) in wanted]


def weight_for(graph: Graph, name: str) -> list[str]:
    """Weight tensor names a config name refers to ([] when none).

    A weight name gives itself; a node name gives the node's compressible weights (or its
    other constants when it has none); a name is also followed through aliases, to what it
    was folded into or copied as (a weight shared by two ops and copied by a pass).
    """
    roles = _roles(graph)
    direct = lambda n: _direct(graph, n, roles)  # noqa: E731
    spellings = _spellings(name)
    for spelling in spellings + _cf_forms(graph, spellings):
        found = direct(spelling)
        if found:
            return found + [w for w in _via_aliases(graph, [spelling], direct) if w not in found]
    return _via_aliases(graph, spellings, direct)


def _via_aliases(graph: Graph, starts: list[str], direct) -> list[str]:
    """What the alias edges from `starts` reach that `direct` accepts (breadth first)."""
    aliases = graph.meta.get("aliases", {})
    seen, queue, out = set(starts), list(starts), []
    while queue:
        for new in aliases.get(queue.pop(0), []):
            if new not in seen:
                seen.add(new)
                queue.append(new)
                out += [f for f in direct(new) if f not in out]
    return out


def _io_name(graph: Graph, name: str, pool: list[str]) -> str | None:
    """The graph input/output `name` refers to (itself, its :0 spelling, or an alias)."""
    for spelling in _spellings(name):
        if spelling in pool:
            return spelling
    found = _via_aliases(graph, _spellings(name), lambda n: [n] if n in pool else [])
    return found[0] if found else None


# -- errors ---------------------------------------------------------------------------------------
_KERAS_VARIABLES = ("kernel", "bias", "depthwise_kernel", "pointwise_kernel", "gamma", "beta")


def _module_nodes(name: str, pool: list[str]) -> list[str]:
    """Names under the layer a framework variable name points at: PyTorch `conv1.weight` ->
    nodes `/conv1/...` (the exporter renames a weight it folded BatchNorm into, `onnx::Conv_25`);
    Keras `conv1/kernel` -> `model_1/conv1_1/...` (frozen graphs name weights by their reader)."""
    stem = name.rpartition(".")[0]
    found = [c for c in pool if stem and c.startswith("/") and _torch_scope(c) == stem]
    layer, _, var = name.partition("/")
    if var.split(":")[0] in _KERAS_VARIABLES:
        found += [c for c in pool if c not in found and {layer, layer + "_1"} & set(c.split("/")[:-1])]
    return found


def _torch_scope(node: str) -> str:
    """`/layer1/layer1.0/conv1/Conv` -> `layer1.0.conv1`, the module a PyTorch node came from."""
    scope = ""
    for part in node.strip("/").split("/")[:-1]:
        scope = part if not scope or part.startswith(scope + ".") else f"{scope}.{part}"
    return scope


def _shared_scope(name: str, candidate: str) -> int:
    """How many leading `/` scopes (layers) two TensorFlow-style names share."""
    k = 0
    for a, b in zip(name.split("/")[:-1], candidate.split("/")):
        if a != b or not a:
            break
        k += 1
    return k


def _same_layer(name: str, pool: list[str], n: int) -> list[str]:
    """Names in the same layer scope as `name` (`tdnn2.affine/...`), most shared scopes first,
    then most similar: a misspelt weight of one layer never suggests another layer first."""
    scored = [(-k, -difflib.SequenceMatcher(None, name, c).ratio(), c)
              for c in pool if (k := _shared_scope(name, c))]
    return [c for *_, c in sorted(scored)[:n]]


def close_matches(name: str, candidates, n: int = 5) -> list[str]:
    """Names in the same layer scope, near-typos, the nodes of the PyTorch module a
    `module.weight` name points at, similar names (difflib), then names containing what the
    user typed."""
    pool = list(dict.fromkeys(c for c in candidates if c))
    found = _same_layer(name, pool, n)
    found += [c for c in difflib.get_close_matches(name, pool, n=n, cutoff=0.85) if c not in found]
    found += [c for c in _module_nodes(name, pool) if c not in found]
    found += [c for c in difflib.get_close_matches(name, pool, n=n, cutoff=0.5) if c not in found]
    low = name.lower()
    found += [c for c in pool if low in c.lower() and c not in found]
    return found[:n]


class ConfigNameError(ConfigError):
    """A problem with one name under a config key; .key and .name let locate() add file:line."""

    def __init__(self, where: str, what: str, accepted: str, key: str, name: str):
        super().__init__(where, what, accepted)
        self.key, self.name = key, name


def unknown(key: str, name: str, candidates, what: str = "is not in the model",
            hint: str = "") -> ConfigNameError:
    """A ConfigError for `name` under `key`, listing close matches; front ends raise it too.

    The error carries .key and .name so that `locate()` can add the config file and line.
    """
    close = close_matches(name, candidates)
    if close and set(close) <= set(hint.split(": ", 1)[-1].split(", ")):
        hint = ""  # the hint ("model outputs: a, b") would only repeat the close matches
    # otherwise both: near misses among inner nodes are often not what the user meant
    parts = [("close matches: " + ", ".join(close)) if close else "", hint]
    accepted = "; ".join(p for p in parts if p) or "see `gxnpuc -w` and `gxnpuc -v`"
    return ConfigNameError(key, f"{name!r} {what}", accepted, key, name)


def locate(cfg: Config, err: ConfigError) -> ConfigError:
    """The same error with `config.yaml:<line>: KEY` as its place, when it came from unknown()."""
    if not isinstance(err, ConfigNameError) or not (cfg.path or cfg.lines):
        return err
    return ConfigNameError(config.where(cfg, err.key, err.name), err.what, err.accepted, err.key, err.name)


# -- the check ------------------------------------------------------------------------------------
def check(cfg: Config, graph: Graph) -> None:
    """Every name the config uses exists in the model; else one ConfigError with close matches."""
    roles = _roles(graph)
    all_names = list(roles) + [n.name for n in graph.nodes]
    for key in WEIGHT_KEYS:
        for name in _config_names(cfg, key):
            _check_weight(cfg, graph, key, name, roles, all_names)
    _check_io(cfg, graph, "INPUT_OPS", list(cfg.input_ops), graph.inputs, "is not an input of the model")
    _check_io(cfg, graph, "OUTPUT_OPS", cfg.output_ops, graph.outputs, "is not an output of the model")
    _check_io(cfg, graph, "FP16_OUT_OPS", cfg.fp16_out_ops, graph.outputs, "is not an output of the model")


def _config_names(cfg: Config, key: str) -> list[str]:
    return list(getattr(cfg, key.lower()))  # a tuple of names, or the WEIGHT_MIN_MAX dict's keys


def _check_weight(cfg: Config, graph: Graph, key: str, name: str, roles: dict, all_names: list) -> None:
    found = weight_for(graph, name)
    if not found:
        node = graph.node(name)
        what = (f"is an op without weights ({node.op})" if node is not None
                else "is not a weight or op of the model")
        raise locate(cfg, unknown(key, name, list(roles) if node else all_names, what))
    if key == "EXCLUDE_CONV2D_COMPRESS_OPS" and not any("conv" in roles.get(w, ()) for w in found):
        raise locate(cfg, unknown(key, name, [], "is not a convolution weight",
                                  "list fully-connected weights in EXCLUDE_COMPRESS_OPS"))


def _check_io(cfg: Config, graph: Graph, key: str, names, pool: list[str], what: str) -> None:
    for name in names:
        if _io_name(graph, name, pool) is None:
            role = "inputs" if key == "INPUT_OPS" else "outputs"
            raise locate(cfg, unknown(key, name, pool, what, f"model {role}: " + ", ".join(pool[:8])))


def order_inputs(cfg, graph: Graph) -> None:
    """Graph inputs in INPUT_OPS order (inputs it does not list follow, in graph order), as
    the vendor's `struct input` has one member per INPUT_OPS entry in that order."""
    found = [_io_name(graph, name, graph.inputs) for name in cfg.input_ops]
    listed = list(dict.fromkeys(n for n in found if n is not None))
    graph.inputs = listed + [n for n in graph.inputs if n not in listed]


def resolve(cfg: Config, graph: Graph):
    """cfg with EXCLUDE_COMPRESS_OPS, EXCLUDE_CONV2D_COMPRESS_OPS and WEIGHT_MIN_MAX keyed by
    weight tensor names only, and FP16_OUT_OPS as graph output names: what compression and the
    backend read (they match nothing themselves).

    A config name selects a weight when the name, or a weight it refers to (weight_for:
    `name:0`, aliases of folded or renamed constants, a node's weights), is the weight itself
    or a node that reads it. A weight's own WEIGHT_MIN_MAX entry wins over its readers'.
    """
    import dataclasses

    readers = weight_readers(graph)

    def expanded(key: str) -> set:
        names = list(getattr(cfg, key.lower()))
        return set(names) | {w for name in names for w in weight_for(graph, name)}

    def selected(key: str) -> tuple:
        wanted = expanded(key)
        return tuple(w for w, rd in readers.items() if wanted & {w, *rd})

    ranges = dict(cfg.weight_min_max)
    for name, pair in cfg.weight_min_max.items():
        for w in weight_for(graph, name):
            ranges.setdefault(w, pair)
    clips = {w: next(ranges[k] for k in (w, *rd) if k in ranges)
             for w, rd in readers.items() if ranges.keys() & {w, *rd}}
    return dataclasses.replace(cfg, exclude_compress_ops=selected("EXCLUDE_COMPRESS_OPS"),
                               exclude_conv2d_compress_ops=selected("EXCLUDE_CONV2D_COMPRESS_OPS"),
                               weight_min_max=clips, fp16_out_ops=fp16_outputs(graph, cfg.fp16_out_ops))


def weight_readers(graph: Graph) -> dict[str, list[str]]:
    """Every constant a node reads -> the names of the nodes reading it, in graph order."""
    out: dict[str, list[str]] = {}
    for node, idx, _ in graph.weight_slots():
        rd = out.setdefault(node.inputs[idx], [])
        if node.name not in rd:
            rd.append(node.name)
    return out


def keys_for(cfg: Config, graph: Graph, key: str, weight: str) -> list[str]:
    """The names under `key` in the user's config that select `weight` (as resolve() does)."""
    rd = {weight, *weight_readers(graph).get(weight, [])}
    return [k for k in getattr(cfg, key.lower()) if rd & ({k} | set(weight_for(graph, k)))]


def fp16_outputs(graph: Graph, names) -> tuple:
    """FP16_OUT_OPS entries as graph output tensors: an output's name (also as `name:0`), the
    node producing it, or a name that lowering renamed (graph.meta["aliases"])."""
    wanted = set(names or ()) | {n[:-2] for n in names or () if n.endswith(":0")}
    aliases, queue = graph.meta.get("aliases", {}), list(wanted)
    while queue:
        for new in aliases.get(queue.pop(), []):
            if new not in wanted:
                wanted.add(new)
                queue.append(new)
    by_node = {o for n in graph.nodes if n.name in wanted for o in n.outputs}
    return tuple(o for o in graph.outputs if o in wanted or o in by_node)


def unused_ranges(cfg, graph: Graph, weights: dict) -> list[str]:
    """Warnings for WEIGHT_MIN_MAX names whose weight is stored uncompressed (the range does
    nothing there): excluded as well, or a family whose compression is off."""
    out = []
    excluded = {w for n in (*cfg.exclude_compress_ops, *cfg.exclude_conv2d_compress_ops)
                for w in [n, *weight_for(graph, n)]}
    for name in cfg.weight_min_max:
        found = [w for w in weight_for(graph, name) if w in weights]
        if not found or any(weights[w].compressed for w in found):
            continue
        family = weights[found[0]].family
        if excluded & ({name, *found}):
            why = "it is also listed in EXCLUDE_COMPRESS_OPS / EXCLUDE_CONV2D_COMPRESS_OPS"
        elif family in COMPRESSIBLE:
            flag = "CONV2D_COMPRESS" if family == "conv" else "COMPRESS"
            why = f"{flag} is off, so this {family} weight is stored as fp16"
        else:
            why = f"a {family} constant is never compressed"
        out.append(f"{config.where(cfg, 'WEIGHT_MIN_MAX', name)}: range of {name!r} has no effect: "
                   f"{why}")
    return out
