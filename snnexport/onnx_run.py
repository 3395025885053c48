"""Run the ONNX artifact in onnxruntime, and the binary-spike (AND-and-add) check.

Parity sessions run with graph optimisations off (ORT_DISABLE_ALL): no fusion may rewrite the
arithmetic we compare (ConvMulFusion / ConvAddFusion would fold scales into weights).
"""

from __future__ import annotations

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper

from .exporters.onnx_common import artifact_model, session  # noqa: F401 (re-exported)
from .exporters.onnx_export import OPSET, synapse_inputs, to_onnx
from .ir import nodes as ir
from .ir.graph import Graph
from .sim.reference import SimResult, encode


class ONNXTarget:
    """The sequence artifact of an IR, ready to run batches (parity session)."""

    def __init__(self, graph: Graph, artifact=None):
        self.graph = graph
        self.artifact = artifact  # a written file: run it, as read back from disk
        self.sessions: dict[int, object] = {}  # one per number of steps (unrolled)
        self.spike_inputs: dict[str, list[np.ndarray]] = {}

    def _session(self, t_steps: int):
        if t_steps not in self.sessions:
            self.sessions[t_steps] = session(
                to_onnx(self.graph, time_steps=t_steps) if self.artifact is None else
                artifact_model(self.artifact, t_steps, int(self.graph.metadata["time_steps"])))
        return self.sessions[t_steps]

    def __call__(self, x: torch.Tensor, dtype=None) -> SimResult:
        x_seq = encode(self.graph, x, None)
        t_steps = x_seq.shape[0]
        if x_seq.stride(0) == 0:  # a static image repeated over T: the artifact takes one row
            x_seq = x_seq[:1]
        x_seq = x_seq.to(torch.float32).numpy()
        sess = self._session(t_steps)
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x_seq}),
                       strict=True))
        spikes = {k[7:]: torch.from_numpy(v.astype(np.float64)) for k, v in out.items()
                  if k.startswith("spikes:")}
        h = {k[2:]: torch.from_numpy(v.astype(np.float64)) for k, v in out.items()
             if k.startswith("h:")}
        for k, v in out.items():
            if k.startswith("in:"):
                self.spike_inputs.setdefault(k[3:], []).append(v)
        return SimResult(torch.from_numpy(out["outputs"]), torch.from_numpy(out["scores"]),
                         spikes, h)


def _integer_grid(w: np.ndarray) -> np.ndarray:
    """int8 weights q = round(127 w / max|w|): the check is about arithmetic, not precision."""
    scale = float(np.abs(w).max()) or 1.0
    return np.clip(np.round(np.asarray(w, np.float64) * 127.0 / scale), -127, 127)


def binary_spike_check(graph: Graph, spike_inputs: dict[str, list[np.ndarray]]) -> list[dict]:
    """For each spike-fed synapse: its recorded inputs are exactly {0, 1}, and the integer
    AND-and-add path (ConvInteger / MatMulInteger on uint8 spikes and the layer's weights on an
    int8 grid: only the weights where a spike is present are added) equals the float multiply
    path (Conv / MatMul on the same values as float32) bit for bit. Integer sums of at most
    fan_in * 127 are exact in float32 (< 2^24), so any difference would be a real one.

    A synapse whose uint8 input is graded by construction (a SEW ADD's sums 0, 1, 2, ...;
    `exporters.onnx_export.synapse_inputs`) is no spike layer: its row says `input` 'graded'
    and `max_input`; the same integer multiply-accumulate is compared with the float one (exact
    too, sums of at most fan_in * 127 * max_input < 2^24), but no AND-and-add is claimed.
    Binary rows say `input` 'binary'."""
    shapes = graph.shapes()
    kinds = synapse_inputs(graph)
    rows = []
    for name, batches in spike_inputs.items():
        node = graph.nodes[name]
        x = np.concatenate([b.reshape(-1, *shapes[graph.inputs(name)[0]]) for b in batches])
        binary = bool(np.isin(x, (0, 1)).all())
        q = _integer_grid(node.weight)
        fan_in = int(np.prod(node.weight.shape[1:]))
        if isinstance(node, ir.Conv2d):
            attrs = dict(strides=list(node.stride), pads=[*node.padding, *node.padding],
                         group=node.groups)
            int_node = helper.make_node("ConvInteger", ["x", "qu", "zx", "zq"], ["acc"], **attrs)
            float_node = helper.make_node("Conv", ["xf", "qf"], ["mul"], **attrs)
        else:
            int_node = helper.make_node("MatMulInteger", ["x", "qu", "zx", "zq"], ["acc"])
            float_node = helper.make_node("MatMul", ["xf", "qf"], ["mul"])
            q = q.T
        # ORT's ConvInteger takes uint8 weights: store q + 128 with zero point 128 (exact)
        inits = [numpy_helper.from_array((q + 128).astype(np.uint8), "qu"),
                 numpy_helper.from_array(np.array(0, np.uint8), "zx"),
                 numpy_helper.from_array(np.array(128, np.uint8), "zq"),
                 numpy_helper.from_array(q.astype(np.float32), "qf")]
        nodes = [int_node, helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
                 float_node]
        model = helper.make_model(helper.make_graph(
            nodes, "and_check", [helper.make_tensor_value_info("x", TensorProto.UINT8, None)],
            [helper.make_tensor_value_info("acc", TensorProto.INT32, None),
             helper.make_tensor_value_info("mul", TensorProto.FLOAT, None)], initializer=inits),
            opset_imports=[helper.make_opsetid("", OPSET)])
        acc, mul = session(model).run(None, {"x": x.astype(np.uint8)})
        rows.append({"layer": name, "input": kinds.get(name, "binary"),
                     "inputs": int(x.size), "input_spikes": int(x.sum()),
                     "inputs_binary": binary, "max_input": int(x.max(initial=0)),
                     "fan_in": fan_in,
                     "and_equals_multiply": bool(np.array_equal(acc.astype(np.float64),
                                                                mul.astype(np.float64)))})
    return rows
