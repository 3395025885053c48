"""What snnexport's NIR export and import agree on (numpy only, below both): the default time
step dt of the Euler discretisation, and the matrix a voting readout is written as."""

from __future__ import annotations

import numpy as np

DEFAULT_DT = 1e-4  # seconds


def voting_matrix(classes: int, population: int) -> np.ndarray:
    """Population voting as a NIR Linear: W[c, c*M:(c+1)*M] = 1/M (o[c] = mean of its M
    inputs), M = population."""
    w = np.zeros((classes, classes * population))
    for c in range(classes):
        w[c, c * population:(c + 1) * population] = 1.0 / population
    return w
