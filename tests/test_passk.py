"""pass@k and success@k against exact enumeration of every k-subset of the samples."""

from __future__ import annotations

from itertools import combinations

import pytest

from sparks.evaluate.passk import pass_at_k, success_at_k


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_estimators_equal_enumeration(n):
    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(combinations(samples, k))
            assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
            assert success_at_k(n, c, k) == pytest.approx(sum(all(s) for s in subsets) / len(subsets))


def test_large_n_does_not_overflow_and_k1_is_accuracy():
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    assert success_at_k(1000, 999, 1) == pytest.approx(0.999)
    assert 0 < pass_at_k(10_000, 3, 500) < 1


def test_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="evaluate.n_samples"):
        pass_at_k(4, 1, 5)
