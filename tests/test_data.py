"""Offline data sets and eq. S1 event-to-frame slicing."""

import numpy as np
import pytest
import tonic

from snnexport.data import events_to_frames, load_dataset, slice_bounds

EVENT = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])

# ten hand-made events on a 3x2 sensor (width 3, height 2) with two polarities
EVENTS = np.array([
    (0, 0, 10, 1), (1, 0, 20, 0), (0, 0, 30, 1),    # slice 0: events 0..2
    (2, 1, 40, 0), (2, 1, 50, 0), (1, 1, 60, 1),    # slice 1: events 3..5
    (0, 1, 70, 1), (0, 1, 80, 1), (2, 0, 90, 0), (1, 0, 95, 1),  # slice 2: 6..9 (N mod T)
], dtype=EVENT)


def test_slice_bounds_follow_eq_s1():
    # floor(10/3) = 3: [0,3), [3,6), and the last slice takes the rest up to N = 10
    assert slice_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert slice_bounds(8, 4) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    with pytest.raises(ValueError):
        slice_bounds(10, 0)


def test_frames_of_a_known_event_list():
    f = events_to_frames(EVENTS, sensor_size=(3, 2, 2), time_steps=3)
    assert f.shape == (3, 2, 2, 3)  # [T, P, H, W]
    expected = np.zeros((3, 2, 2, 3), dtype=np.int64)
    expected[0, 1, 0, 0] = 2  # two ON events at (x=0, y=0)
    expected[0, 0, 0, 1] = 1
    expected[1, 0, 1, 2] = 2
    expected[1, 1, 1, 1] = 1
    expected[2, 1, 1, 0] = 2
    expected[2, 0, 0, 2] = 1
    expected[2, 1, 0, 1] = 1
    assert np.array_equal(f, expected)
    assert f.sum() == len(EVENTS)  # no event lost


def test_agrees_with_tonic_except_the_remainder_tonic_drops():
    to_frame = tonic.transforms.ToFrame(sensor_size=(3, 2, 2), n_event_bins=3)
    theirs = to_frame(EVENTS)  # [T, P, H, W]
    ours = events_to_frames(EVENTS, (3, 2, 2), 3)
    assert np.array_equal(ours[:2], theirs[:2])
    # tonic's last frame has floor(N/T) = 3 events; eq. S1 adds the N mod T = 1 left over
    assert theirs[2].sum() == 3 and ours[2].sum() == 4
    assert np.array_equal(ours[2] - theirs[2], events_to_frames(EVENTS[9:], (3, 2, 2), 1)[0])


def test_unsorted_or_incomplete_events_are_rejected():
    with pytest.raises(ValueError, match="sorted"):
        events_to_frames(EVENTS[::-1], (3, 2, 2), 3)
    with pytest.raises(ValueError, match="fields"):
        events_to_frames(np.zeros(3, dtype=[("x", int), ("y", int)]), (3, 2, 2), 3)


@pytest.mark.parametrize("name,n_train,n_test,side", [("digits", 1347, 450, 8),
                                                      ("mnist5k", 4000, 1000, 28)])
def test_fixed_stratified_splits(name, n_train, n_test, side):
    ds = load_dataset(name)
    assert ds.x_train.shape == (n_train, 1, side, side) and ds.x_test.shape[0] == n_test
    # stratified: each class's share of the test split is within one sample of its share overall
    counts = np.bincount(ds.y_test.numpy(), minlength=10)
    total = np.bincount(np.concatenate([ds.y_train.numpy(), ds.y_test.numpy()]), minlength=10)
    assert np.all(np.abs(counts - total * n_test / total.sum()) <= 1)
    # standardised with the training split's statistics
    assert abs(float(ds.x_train.mean())) < 1e-4 and abs(float(ds.x_train.std()) - 1) < 1e-3
