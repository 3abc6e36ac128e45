"""Property tests: arbitrary interleavings of ask/tell never corrupt state."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FACTORIES

NAMES = sorted(n for n in FACTORIES if n != "evogm-default")  # default preset's full epochs are slow under hypothesis

step = st.tuples(
    st.integers(min_value=1, max_value=7),  # ask count
    st.floats(min_value=0.0, max_value=1.0),  # fraction of the asked rows told
    st.booleans(),  # shuffle
    st.integers(min_value=0, max_value=2),  # external rows added
    st.sampled_from([None, "nan", "inf"]),  # a failure among the values
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES), steps=st.lists(step, min_size=1, max_size=8), seed=st.integers(0, 2**16))
def test_any_ask_tell_sequence_keeps_counts_best_and_bounds_consistent(name, steps, seed):
    rng = np.random.default_rng(seed)
    opt = FACTORIES[name](3, bounds=(-2.0, 1.0), seed=seed)
    told_values: list[float] = []
    told_rows: list[np.ndarray] = []
    for n, fraction, shuffle, n_external, failure in steps:
        x = opt.ask(n)
        assert x.shape == (n, 3) and np.all(x >= -2.0) and np.all(x <= 1.0)
        rows = x[: int(round(fraction * n))]
        if shuffle:
            rows = rows[rng.permutation(len(rows))]
        rows = np.concatenate([rows, rng.uniform(-2.0, 1.0, (n_external, 3))])
        y = [float(np.sum(r**2)) for r in rows]
        if failure and y:
            y[0] = float(failure)
        opt.tell(rows, y)
        told_rows += list(rows)
        told_values += y
    assert opt.n_evals == len(told_values)
    finite = [v for v in told_values if np.isfinite(v)]
    assert opt.n_failed == len(told_values) - len(finite)
    if finite:
        assert opt.best.y == min(finite)
        assert any(np.array_equal(opt.best.x, r) for r in told_rows)
    else:
        assert opt.best is None
    clone = type(opt).from_state_dict(opt.state_dict())
    np.testing.assert_array_equal(clone.ask(2), opt.ask(2))
