"""Checkpoints: {format, version, config, state_dict, meta}, read with weights_only=True.

Saving writes to a temporary file in the same folder and renames it, so a crash never leaves
a half-written checkpoint behind.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import SnnexportError
from ..files import atomic_write
from .network import NetConfig, PLIFNet, build_network

FORMAT = "snnexport-checkpoint"
VERSION = 1


class CheckpointError(SnnexportError, ValueError):
    """A checkpoint that cannot be used; the message names the file and what would work."""


def save_checkpoint(model: PLIFNet, path, meta: dict | None = None) -> Path:
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path) -> tuple[PLIFNet, dict]:
    """Returns (model in eval mode, meta). Raises CheckpointError with the file name."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (expected a checkpoint written by "
                              f"`snnexport train`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad bytes (IndexError, EOFError, ...)
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({type(e).__name__}: {str(e)[:200]}); "
            f"expected a file written by `snnexport train` / save_checkpoint") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an snnexport checkpoint (no 'format': '{FORMAT}' entry); a bare "
            f"state_dict needs its architecture: save it with snnexport.models.save_checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')!r} is not "
                              f"supported (this snnexport reads version {VERSION})")
    try:
        cfg = NetConfig.from_dict(payload["config"])
        # shapes first, on the meta device (no memory): a config can ask for any size, and
        # only one whose every tensor is in the file (so no larger than it) is built for real
        with torch.device("meta"):
            skeleton = build_network(cfg)
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise CheckpointError(f"{path}: bad architecture config: {str(e)[:200]}") from None
    state = payload.get("state_dict", {})
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' is not a dict of tensors")
    own = skeleton.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}: state_dict does not match its config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}")
    try:
        model = build_network(cfg)
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as e:  # e.g. a value out of the dtype's range
        raise CheckpointError(f"{path}: state_dict cannot be loaded ({str(e)[:200]})") from None
    model.eval()
    return model, dict(payload.get("meta", {}))
