"""Unbiased estimators over n samples of a problem, c of them correct (Chen et al. 2021 for pass@k).

- pass@k = 1 - C(n - c, k) / C(n, k): the chance that at least one of k samples drawn without
  replacement from the n is correct (coverage).
- success@k = C(c, k) / C(n, k): the chance that all k drawn samples are correct. This is sparks'
  precise reading of the paper's "efficient correctness": a budget of k samples spent without a
  single wrong answer. pass@k rises with k, success@k falls; their gap is how much of the coverage
  comes from luck rather than from reliably solving the problem.
Both are exact for k <= n and are computed as products, so large n does not overflow.
"""

from __future__ import annotations


def pass_at_k(n: int, c: int, k: int) -> float:
    _check(n, c, k)
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):  # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
        miss *= 1.0 - k / i
    return 1.0 - miss


def success_at_k(n: int, c: int, k: int) -> float:
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
