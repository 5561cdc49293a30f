from __future__ import annotations

import numpy as np

from tally_detector.deps import PhotoCache


def test_the_cache_keeps_the_most_recently_used_photos() -> None:
    cache = PhotoCache(capacity=2)
    a, b, c = (np.full((2, 2, 3), v, np.uint8) for v in (1, 2, 3))
    cache["a"] = a
    cache["b"] = b
    assert cache.get("a") is a  # a is now the most recent
    cache["c"] = c
    assert cache.get("b") is None
    assert cache.get("a") is a
    assert cache.get("c") is c
