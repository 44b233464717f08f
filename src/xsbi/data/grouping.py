"""Channel grouping in the OGIP convention (OGIP/92-007).

A GROUPING array holds, per channel, +1 where a new group starts and -1 where the channel
continues the previous group (0, "no grouping information", is treated as its own group).
Channels with non-zero QUALITY are bad: they belong to no bin and contribute to no sum.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from xsbi.errors import DataError


def group_ids(grouping, n_channels) -> np.ndarray:
    """Group index (0, 1, ...) of every channel from an OGIP GROUPING array (None = ungrouped)."""
    if grouping is None:
        return np.arange(n_channels, dtype=np.int64)
    grouping = np.asarray(grouping).reshape(-1)
    if grouping.size != n_channels:
        raise DataError(f"GROUPING has {grouping.size} entries for {n_channels} channels.")
    starts = grouping != -1
    starts[0] = True  # a leading -1 has nothing to continue
    return np.cumsum(starts) - 1


def bin_layout(gids, good):
    """First and last good channel of every group that has at least one good channel.

    Returns
    -------
    first, last : ndarray of channel indices, one per bin, in channel order
    group_of_bin : ndarray, the group index of each bin
    """
    idx = np.flatnonzero(good)
    if idx.size == 0:
        return (np.zeros(0, dtype=np.int64),) * 3
    g = gids[idx]
    new = np.r_[True, g[1:] != g[:-1]]
    end = np.r_[g[1:] != g[:-1], True]
    return idx[new], idx[end], g[new]


def constant_grouping(n_channels, n) -> np.ndarray:
    """GROUPING of ``n`` adjacent channels from the first channel (grppha ``group min max n``).

    Boundaries stay aligned on the first channel whatever the quality; bad channels are simply
    left out of their group's sums, as grppha does. A trailing short group is kept.
    """
    n = _positive_int(n, "group_constant")
    grouping = -np.ones(n_channels, dtype=np.int64)
    grouping[::n] = 1
    return grouping


def min_counts_grouping(counts, good, segment, n) -> np.ndarray:
    """GROUPING with at least ``n`` counts per group, within each contiguous segment.

    Parameters
    ----------
    counts : ndarray of int, per channel
    good : bool ndarray, per channel (bad channels are skipped)
    segment : int ndarray, per channel: -1 outside the band, else an id of the contiguous
        stretch of noticed channels; groups never cross segments, so band edges are kept.
    n : int

    Notes
    -----
    Good channels are accumulated in order until the group holds >= n counts; a final group
    of a segment with fewer than n counts is merged into the previous group of that segment.
    Channels outside every segment each form their own group.
    """
    n = _positive_int(n, "group_min_counts")
    grouping = np.ones(counts.size, dtype=np.int64)
    inside = segment >= 0
    grouping[inside] = -1
    seg_start = inside & np.r_[True, segment[1:] != segment[:-1]]
    grouping[seg_start] = 1
    open_start, acc, prev_start = None, 0, None
    for i in np.flatnonzero(inside):
        if seg_start[i]:
            _close_segment(grouping, open_start, prev_start)
            open_start, acc, prev_start = None, 0, None
        if not good[i]:
            continue
        if open_start is None:
            open_start, acc = i, 0
            grouping[i] = 1
        acc += int(counts[i])
        if acc >= n:
            prev_start, open_start = open_start, None
    _close_segment(grouping, open_start, prev_start)
    return grouping


def _close_segment(grouping, open_start, prev_start):
    # A short final group joins the previous one, unless it is the segment's only group.
    if open_start is not None and prev_start is not None:
        grouping[open_start] = -1


def _positive_int(n, what):
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise DataError(f"{what} needs a positive integer, got {n!r}.")
    return int(n)


def grouping_matrix(chan_bin, n_bins) -> sp.csr_matrix:
    """Sparse (n_channels, n_bins) matrix with 1 where a channel belongs to a bin."""
    rows = np.flatnonzero(chan_bin >= 0)
    return sp.csr_matrix(
        (np.ones(rows.size), (rows, chan_bin[rows])), shape=(chan_bin.size, n_bins)
    )


def sum_by_bin(values, chan_bin, n_bins) -> np.ndarray:
    """Sum a per-channel float array over the channels of each bin."""
    use = chan_bin >= 0
    return np.bincount(chan_bin[use], weights=np.asarray(values, dtype=np.float64)[use],
                       minlength=n_bins)
