"""`framework._windows` against the definition: a start fits when its window has no blocked slot."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.scheduler.framework import _windows


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    pools=st.integers(1, 5),
    slots=st.integers(1, 12),
)
def test_windows_match_the_definition(data: st.DataObject, pools: int, slots: int) -> None:
    blocked = np.array(
        data.draw(
            st.lists(
                st.lists(st.booleans(), min_size=slots, max_size=slots),
                min_size=pools,
                max_size=pools,
            )
        )
    )
    n_first = np.array(
        data.draw(st.lists(st.integers(1, slots + 3), min_size=pools, max_size=pools))
    )
    n_later = np.array(
        data.draw(st.lists(st.integers(1, slots + 3), min_size=pools, max_size=pools))
    )
    picked = data.draw(st.sets(st.integers(1, slots - 1), max_size=4)) if slots > 1 else set()
    cols = np.array(sorted(picked), dtype=np.int64)
    earliest, has_slot, cand_ok = _windows(blocked, n_first, n_later, cols)
    for p in range(pools):
        fits = [
            not blocked[p, s : min(s + (n_first[p] if s == 0 else n_later[p]), slots)].any()
            for s in range(slots)
        ]
        assert has_slot[p] == any(fits)
        assert earliest[p] == (fits.index(True) if any(fits) else 0)
        assert list(cand_ok[p]) == [fits[c] for c in cols]
