"""The join store's expiry: skipping the scan when nothing can be past the TTL changes nothing."""

from __future__ import annotations

import numpy as np
from fairwatch.streaming.join import JoinStore
from hypothesis import given, settings
from hypothesis import strategies as st


def _add(store: JoinStore, ids: list[str], ts: np.ndarray, labels: np.ndarray) -> None:
    n = len(ids)
    store.add_decisions(
        ids, ts, np.full(n, 0.5), np.ones(n, np.int64), labels, np.arange(n), np.zeros((n, 1), np.int64)
    )


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 300),  # decisions in the batch (0: only an expiry)
            st.floats(0, 5000),  # the batch's newest event time
            st.floats(0, 3000),  # how far back its times reach
            st.floats(0, 8000),  # the watermark of the expiry after it
        ),
        min_size=1,
        max_size=25,
    ),
    capacity=st.sampled_from([8, 30, 5000]),
    seed=st.integers(0, 2**16),
)
def test_expiry_with_the_lower_bound_equals_a_full_scan(steps, capacity, seed):
    """Two stores get the same batches (times out of order, some labeled, growth past the first
    allocation, trims to capacity); one always scans every row at expiry. Same rows, counts and
    unlabeled pending after every step."""
    rng = np.random.default_rng(seed)
    fast, full = (JoinStore(width=1, ttl=1000.0, capacity=capacity) for _ in range(2))
    k = 0
    for n, newest, back, watermark in steps:
        ids = [f"d{k + j}" for j in range(n)]
        k += n
        ts = newest - rng.uniform(0, back, n)
        labels = rng.choice([-1, 0, 1], n)
        for store in (fast, full):
            _add(store, ids, ts.copy(), labels.copy())
        full._min_ts = -np.inf  # never skip
        for store in (fast, full):
            store.expire(watermark=watermark)
        assert fast.index == full.index
        assert fast.counts == full.counts
        assert fast.pending_unlabeled == full.pending_unlabeled
        live = fast.ts[fast.used]
        assert not len(live) or fast._min_ts <= live.min()
    assert k == 0 or fast.counts["expired"] + len(fast) <= k
