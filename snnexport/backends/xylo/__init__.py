"""SynSense Xylo as a chip family: 'xylo-audio2', 'xylo-audio3', 'xylo-imu'.

Its chain (base.Chain): the folded IR quantised to a Xylo net (quantise.py: bit-shift decays
per neuron, int8 weights with a shift per matrix, 16-bit state, reset by subtraction; refused
in one line where the chip's rules in targets/chips/<chip>.toml, as hw/fit.py reads them,
say no) and snnexport's own vectorised Xylo emulator (emulator.py) as the reference. Each
target writes the net (`export --to xylo-imu`: a .npz of its integer arrays and a JSON
header; deploy's model.<target>.npz), runs that file, read back, in xylosim (xylosim_run.py:
SynSense's C++ simulator of the core; no hardware, no samna) and is compared with the
emulator spike for spike, on the float model's time steps (every layer aligned by its delay).

One backend per chip, not one 'xylo' with a chip option: the chips share the neuron and the
emulator but take different models (8 / 32 / 16 outputs, 1000 / 992 / 496 hidden neurons), so
`check --target xylo-imu` and deploy's row per chip say which chip takes the model, the way
the Loihi targets are named; check and deploy have no per-target options.
"""

from __future__ import annotations

import functools

import torch

from ..base import Backend, Chain, Export, register

CHIPS = {"xylo-audio2": "SynSense Xylo Audio 2", "xylo-audio3": "SynSense Xylo Audio 3",
         "xylo-imu": "SynSense Xylo IMU"}


def reference_runner(net, stats):
    from .emulator import emulate

    def run(xb):
        return emulate(net, xb, stats)
    return run


def thresholds(net) -> dict:
    """The emulator's membrane is v over the neuron's threshold: a tie is at 1."""
    return {lay.name: 1.0 for lay in net.layers}


def new_stats():
    from ...quant.emulator import EmulatorStats

    return EmulatorStats()


def make_runner(net, dtype, stats):
    from .emulator import as_counts, to_result
    from .xylosim_run import XylosimNet

    sim = XylosimNet(net)

    def run(xb):
        return to_result(net, sim.run(as_counts(net, xb)), int(xb.shape[0]))
    return run


def write(net, path):
    from .net import save_xylo

    return save_xylo(net, path)


def run_file(path, net, dtype, stats):
    """The Xylo net file at `path` (what this target's export wrote), read back, in xylosim."""
    from .net import load_xylo

    return make_runner(load_xylo(path), dtype, stats)


def chain(chip: str) -> Chain:
    from .quantise import quantise

    return Chain(chip, functools.partial(quantise, chip=chip), reference_runner, thresholds,
                 new_stats, f"quantised for {CHIPS[chip]}")


for _chip, _title in CHIPS.items():
    register(Backend(_chip, f"xylosim ({_title}) vs snnexport's Xylo emulator", make_runner,
                     exports=Export(f".{_chip}.npz", write), reference="emulator",
                     fixed_point=True, chain=chain(_chip), dtype=torch.int64,
                     profile="cmos45", mismatch_cause="unexplained", run_file=run_file))
