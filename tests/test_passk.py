"""The three estimators against brute force: every k-subset of the samples for pass@k and
all-correct@k, the definition on hand-made ordered samples for the study's success@k, and
every order of the samples (success@k averaged over them is pass@k)."""

from __future__ import annotations

from itertools import combinations, permutations

import polars as pl
import pytest

from sparks.evaluate import pass_table
from sparks.evaluate.passk import all_correct_at_k, pass_at_k, success_at_k


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_combinatorial_estimators_equal_enumeration(n):
    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(combinations(samples, k))
            assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
            assert all_correct_at_k(n, c, k) == pytest.approx(sum(all(s) for s in subsets) / len(subsets))


def test_success_at_k_reads_the_first_k_samples_in_generation_order():
    ordered = [False, False, True, False]
    assert [success_at_k(ordered, k) for k in range(1, 5)] == [0.0, 0.0, 1.0, 1.0]
    assert [success_at_k([True, False, False], k) for k in range(1, 4)] == [1.0, 1.0, 1.0]
    assert [success_at_k([False] * 3, k) for k in range(1, 4)] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("samples", [(True, False, False, False), (True, True, False, False, False), (False, True, True)])
def test_success_at_k_over_every_order_is_pass_at_k(samples):
    orders = list(permutations(samples))
    n, c = len(samples), sum(samples)
    for k in range(1, n + 1):
        assert sum(success_at_k(order, k) for order in orders) / len(orders) == pytest.approx(pass_at_k(n, c, k))


def test_pass_table_orders_samples_by_their_index_not_by_row():
    samples = pl.DataFrame(  # one problem, rows out of generation order: sample 0 is wrong, 1 right
        {"difficulty": ["easy"] * 3, "sample_id": [7] * 3, "k": [2, 1, 0], "correct": [False, True, False]}
    )
    table = pass_table(samples, (1, 2, 3))
    assert table["success_at_k"].to_list() == [0.0, 1.0, 1.0]
    assert table["pass_at_k"].to_list() == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert table["all_correct_at_k"].to_list() == pytest.approx([1 / 3, 0.0, 0.0])


def test_large_n_does_not_overflow_and_k1_is_accuracy():
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    assert all_correct_at_k(1000, 999, 1) == pytest.approx(0.999)
    assert 0 < pass_at_k(10_000, 3, 500) < 1


def test_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="evaluate.n_samples"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="evaluate.n_samples"):
        success_at_k([True, False], 3)
