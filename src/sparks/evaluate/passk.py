"""Per-problem estimators over the n samples of a problem, c of them correct.

- pass@k = 1 - C(n - c, k) / C(n, k): the chance that at least one of k samples drawn without
  replacement from the n is correct (Chen et al. 2021's unbiased estimator of coverage).
- success@k as the study publishes it (arXiv 2509.25758, App. A.9, Eq. 18): 1 when a correct
  answer is among the first k samples *in generation order*, else 0; its mean over problems is
  the table's success@k. Over every order of the same samples it averages to pass@k, but it
  reads one order, so it varies more from run to run.
- all-correct@k = C(c, k) / C(n, k): the chance that all k drawn samples are correct (a budget
  of k samples without a single wrong answer). sparks reported this under the name success@k
  before it followed the paper; it falls with k where the other two rise.
The combinatorial ones are exact for k <= n and computed as products, so large n does not overflow.
"""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    _check(n, c, k)
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):  # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
        miss *= 1.0 - k / i
    return 1.0 - miss


def success_at_k(correct_in_order: Sequence[bool], k: int) -> float:
    """1.0 when one of the first ``k`` samples (in generation order) is correct, else 0.0."""
    _check(len(correct_in_order), sum(map(bool, correct_in_order)), k)
    return float(any(correct_in_order[:k]))


def all_correct_at_k(n: int, c: int, k: int) -> float:
    _check(n, c, k)
    if c < k:
        return 0.0
    hit = 1.0
    for j in range(k):  # C(c, k) / C(n, k) = prod_{j<k} (c - j) / (n - j)
        hit *= (c - j) / (n - j)
    return hit


def _check(n: int, c: int, k: int) -> None:
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k}); raise evaluate.n_samples or lower k")
