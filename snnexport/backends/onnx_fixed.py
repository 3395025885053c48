"""'onnx-fixed': the fixed-point IR as integer ONNX in onnxruntime, against the emulator."""

from __future__ import annotations

import torch

from .base import Backend, Export, register
from .loihi import LOIHI


def write(net, path, lean: bool = False):
    from ..exporters.onnx_fixed import write_onnx_fixed

    return write_onnx_fixed(net, path, lean=lean)


def note(options: dict) -> str:
    from ..exporters.onnx_fixed import OPSET_FIXED as OPSET

    return (f"ONNX opset {OPSET}: bias0 int16 [T or 1, B, *first layer] (host current "
            "mantissas) -> " + ("outputs" if options.get("lean") else
                                "spikes:<layer> uint8, h:<layer> int64, outputs"))


def make_runner(net, dtype, stats):
    from ..exporters.onnx_fixed import ONNXFixedTarget

    return ONNXFixedTarget(net)


def run_file(path, net, dtype, stats):
    from ..exporters.onnx_fixed import ONNXFixedTarget

    return ONNXFixedTarget(net, artifact=path)


register(Backend("onnx-fixed", "integer ONNX in onnxruntime vs the emulator", make_runner,
                 exports=Export(".fixed.onnx", write, options=("lean",), note=note),
                 reference="emulator",
                 fixed_point=True, chain=LOIHI, dtype=torch.int64, run_file=run_file))
