"""Accuracy and per-layer firing rates of a torch model on real data."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from .models.network import PLIFNet


@dataclass
class LayerActivity:
    name: str
    neurons: int  # per sample
    spikes: int  # over all samples and time steps

    def rate(self, samples: int, time_steps: int) -> float:
        return self.spikes / max(1, self.neurons * samples * time_steps)


@dataclass
class Evaluation:
    samples: int
    time_steps: int
    correct: int
    layers: list[LayerActivity]

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.samples)

    def to_dict(self) -> dict:
        return {
            "samples": self.samples, "time_steps": self.time_steps, "accuracy": self.accuracy,
            "layers": [{"name": a.name, "neurons": a.neurons, "spikes": a.spikes,
                        "rate": a.rate(self.samples, self.time_steps)} for a in self.layers],
        }

    def text(self) -> str:
        lines = [f"accuracy {100 * self.accuracy:.2f} % ({self.correct}/{self.samples}), "
                 f"T={self.time_steps}", f"{'layer':<10}{'neurons':>9}{'spikes':>12}{'rate':>9}"]
        for a in self.layers:
            lines.append(f"{a.name:<10}{a.neurons:>9}{a.spikes:>12}"
                         f"{a.rate(self.samples, self.time_steps):>9.4f}")
        return "\n".join(lines)


def frames_first(xb: torch.Tensor, graph) -> torch.Tensor:
    """A batch as the model takes it: frame sequences are stored [B, T, *input] and run
    [T, B, *input]; static inputs [B, *input] pass unchanged."""
    from .sim.limits import input_shape

    return xb.transpose(0, 1) if xb.dim() == len(input_shape(graph)) + 2 else xb


@torch.no_grad()
def evaluate(model: PLIFNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256,
             source: str = "<model>", what: str = "the inputs", fix: str = "") -> Evaluation:
    """Runs the model in eval mode; counts the spikes of every spiking neuron layer. Refused
    before running (UsageError): no samples, inputs of another shape than the model's, a batch
    larger than the memory available (`source` and `what` name the model and the inputs, `fix`
    what would fit)."""
    from .importers.plifnet import import_plifnet
    from .sim.limits import count, ensure_fits, fit_input, run_bytes, time_steps_of

    count("--samples", len(y))
    batch_size = count("batch_size", batch_size)
    graph = import_plifnet(model, None if source == "<model>" else source)
    fit_input(graph, x, source, what, fix)
    t, batch = time_steps_of(graph, x), min(batch_size, len(y))
    ensure_fits(run_bytes(graph, batch, t, itemsize=4),
                f"{source}: evaluating batches of {batch} samples over T={t}",
                "lower T, the batch or the model's size")
    was_training = model.training
    model.eval()
    spiking = OrderedDict((n, m) for n, m in model.neuron_layers().items() if m.spiking)
    counts = {n: 0 for n in spiking}
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: counts.__setitem__(
        n, counts[n] + int(out.sum().item()))) for n, m in spiking.items()]
    correct = 0
    try:
        for lo in range(0, len(y), batch_size):
            scores = model.scores(model(frames_first(x[lo:lo + batch_size], graph)))
            correct += int((scores.argmax(1) == y[lo:lo + batch_size]).sum())
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    layers = [LayerActivity(n, int(torch.tensor(m.shape).prod()), counts[n])
              for n, m in spiking.items()]
    return Evaluation(len(y), model.cfg.time_steps, correct, layers)
