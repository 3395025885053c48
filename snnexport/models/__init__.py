"""Seed models: PLIF/LIF/IF neurons, the Table S1 network family, losses, checkpoints."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .losses import LOSSES, get_loss
from .network import NEURONS, READOUTS, NetConfig, PLIFNet, build_network
from .neurons import IF, LIF, PLIF, SpikingNeuron, lognormal_tau, neuron_step, tau_variance_penalty

__all__ = [
    "IF", "LIF", "LOSSES", "NEURONS", "PLIF", "READOUTS", "CheckpointError", "NetConfig",
    "PLIFNet", "SpikingNeuron", "build_network", "get_loss", "load_checkpoint",
    "lognormal_tau", "neuron_step", "save_checkpoint", "tau_variance_penalty",
]
