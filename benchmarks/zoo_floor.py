"""Who is off when gxnpuc's float IR and an ONNX model's own runtime disagree (below 80 dB).

    python -m benchmarks.zoo_floor config.yaml data.npz

Runs sample 0 through the float IR (keeping every tensor) and through onnxruntime with every
intermediate tensor the two share exposed as an output, finds the first shared tensor where
they disagree, and evaluates that one node again in float64 (the ONNX reference evaluator on
the model's node with every float cast to double) on onnxruntime's own inputs to it. Both
sides are then measured against that float64 value: when onnxruntime is the one far from it,
the disagreement is the runtime's own noise floor (e.g. MLAS's fast Sigmoid on outputs near 0),
not an error of the float IR. Prints one JSON object; `make zoo` puts it in the table.
"""
from __future__ import annotations

import json
import sys

import numpy as np

BAR_DB = 80.0


def first_disagreement(cfg_path: str, npz: str) -> dict | None:
    import onnx
    import onnxruntime as ort

    from gxnpuc import compiler, config, sim
    from gxnpuc.evaluate.metrics import snr_db

    cfg = config.load(cfg_path)
    model = compiler.compile(cfg)
    g = model.graph
    feeds = {k: np.asarray(v)[0] for k, v in np.load(npz).items() if k in g.inputs}
    env = sim.run(g, feeds, sim.model_consts(model, "float"), keep=True)
    proto = onnx.load(cfg.model_path)
    shared = [o for n in proto.graph.node for o in n.output if o in env and o not in g.inputs]
    node_of = {o: n for n in proto.graph.node for o in n.output}
    exposed = onnx.ModelProto()
    exposed.CopyFrom(proto)
    del exposed.graph.output[:]
    exposed.graph.output.extend(onnx.helper.make_empty_tensor_value_info(o) for o in shared)
    sess = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    fed = {i.name: feeds[i.name].reshape(g.tensors[i.name].shape) for i in sess.get_inputs() if i.name in feeds}
    got = dict(zip(shared, sess.run(shared, fed)))
    for name in shared:
        ours, theirs = np.asarray(env[name], np.float64), np.asarray(got[name], np.float64)
        if ours.size != theirs.size or snr_db(theirs.ravel(), ours.ravel()) >= BAR_DB:
            continue
        node = node_of[name]
        ref = _node_f64(proto, node, name, {**fed, **got})
        row = {"tensor": name, "op": node.op_type, "ir_vs_runtime_db": snr_db(theirs.ravel(), ours.ravel())}
        if ref is not None:
            row.update(runtime_vs_f64_db=snr_db(ref.ravel(), theirs.ravel()),
                       ir_op_on_runtime_inputs_vs_f64_db=_ir_op_db(g, name, got, env, ref))
        return row
    return None


def _node_f64(proto, node, output: str, values: dict) -> np.ndarray | None:
    """The node's output `output` in float64 by the ONNX reference evaluator, inputs from values."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    feeds, graph_inits = {}, []
    for i in node.input:
        if not i:
            continue
        v = np.asarray(values[i] if i in values else inits[i])
        v = v.astype(np.float64) if np.issubdtype(v.dtype, np.floating) else v
        if i in values:
            feeds[i] = v
        else:
            graph_inits.append(numpy_helper.from_array(v, i))
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for k, v in feeds.items()]
    single = helper.make_graph([node], "one", ins, [helper.make_empty_tensor_value_info(output)], graph_inits)
    m = helper.make_model(single, opset_imports=proto.opset_import)
    try:
        out = ReferenceEvaluator(m).run([output], feeds)[0]
    except Exception:  # an op the reference evaluator lacks in float64: no verdict
        return None
    return np.asarray(out, np.float64) if np.asarray(out).dtype == np.float64 else None


def _ir_op_db(g, name: str, got: dict, env: dict, ref: np.ndarray) -> float:
    """The float IR node that makes `name` alone, run on onnxruntime's inputs where it has them."""
    from gxnpuc.evaluate.metrics import snr_db
    from gxnpuc.ops import REGISTRY

    node = next(n for n in g.nodes if name in n.outputs)

    def value(t: str):
        if t in got and t in env and np.size(got[t]) == np.size(env[t]):
            return np.asarray(got[t], np.float32).reshape(np.shape(env[t]))
        return env[t] if t in env else g.tensors[t].data if t else None
    out = REGISTRY[node.op].run(node, [value(t) for t in node.inputs])[node.outputs.index(name)]
    return snr_db(ref.ravel(), np.asarray(out, np.float64).ravel())


def main(argv: list[str]) -> int:
    print(json.dumps(first_disagreement(argv[0], argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
