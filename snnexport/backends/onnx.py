"""'onnx': the sequence artifact in onnxruntime (optimisations off), float32, plus the
binary-spike (AND-and-add) check of every spike-fed layer."""

from __future__ import annotations

import torch

from .base import Backend, Export, register


def write(folded, path, step: bool = False):
    from ..exporters.onnx_export import write_onnx

    return write_onnx(folded, path, step=step)


def note(options: dict) -> str:
    from ..exporters.onnx_export import OPSET

    form = ("one time step, state as inputs/outputs" if options.get("step")
            else "x [T, B, ...] -> scores, outputs, spikes:<layer>")
    return f"ONNX opset {OPSET}, {form}"


def make_runner(folded, dtype, stats):
    from ..onnx_run import ONNXTarget

    return ONNXTarget(folded)


def finish(report, runner, folded) -> None:
    from ..onnx_run import binary_spike_check

    report.binary = binary_spike_check(folded, runner.spike_inputs)


register(Backend("onnx", "onnxruntime, optimisations off", make_runner,
                 exports=Export(".onnx", write, options=("step",), note=note),
                 dtype=torch.float32, finish=finish))
