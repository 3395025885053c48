"""'onnx': the sequence artifact in onnxruntime (optimisations off), float32, plus the
binary-spike (AND-and-add) check of every spike-fed layer."""

from __future__ import annotations

import torch

from .base import Backend, Export, register


def write(folded, path, step: bool = False, lean: bool = False):
    from ..errors import UsageError
    from ..exporters.onnx_export import write_onnx

    if step and lean:
        raise UsageError("export --to onnx: --lean is the sequence artifact's deployment form; "
                         "the streaming one (--step) has no per-layer outputs to leave out")
    return write_onnx(folded, path, step=step, lean=lean)


def note(options: dict) -> str:
    from ..exporters.onnx_export import OPSET

    form = ("one time step, state as inputs/outputs" if options.get("step")
            else "x [T or 1, B, ...] -> scores, outputs" + (
                "" if options.get("lean") else ", spikes:<layer>, h:<layer>"))
    return f"ONNX opset {OPSET}, {form}"


def make_runner(folded, dtype, stats):
    from ..onnx_run import ONNXTarget

    return ONNXTarget(folded)


def run_file(path, folded, dtype, stats):
    from ..onnx_run import ONNXTarget

    return ONNXTarget(folded, artifact=path)


def finish(report, runner, folded) -> None:
    from ..onnx_run import binary_spike_check

    report.binary = binary_spike_check(folded, runner.spike_inputs)


register(Backend("onnx", "onnxruntime, optimisations off", make_runner,
                 exports=Export(".onnx", write, options=("step", "lean"), note=note),
                 dtype=torch.float32, finish=finish, run_file=run_file))
