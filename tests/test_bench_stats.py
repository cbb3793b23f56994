"""Statistics of the bench stopping rule and summaries, against exact values and known distributions."""

import math
import random
import statistics
from fractions import Fraction

import pytest

from dnnbench.core.measurements import LatencyStats
from dnnbench.core.stats import (binom_cdf, block_ci_halfwidth, block_medians, linear_fit, median_ci, median_ci_ranks,
                                 min_samples_for_quantile, t_quantile,
                                 quantile, summarize)


def exact_cdf(k, n, p):
    p = Fraction(p)
    return float(sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1)))


@pytest.mark.parametrize("n,k,p", [(10, 3, 0.5), (10, 8, 0.9), (64, 62, 0.9), (200, 90, 0.5), (30, 0, 0.5),
                                   (662, 660, 0.99), (50, 49, 0.3)])
def test_binomial_cdf_matches_exact_arithmetic(n, k, p):
    assert binom_cdf(k, n, p) == pytest.approx(exact_cdf(k, n, p), rel=1e-9, abs=1e-15)


def test_median_ci_ranks_match_the_textbook_table():
    # Conover, Practical Nonparametric Statistics: n=6 -> (1,6), n=10 -> (2,9), n=100 -> (40,61) at 95 %
    assert median_ci_ranks(5) is None  # 2 * 2**-5 = 0.0625 > 0.05: no interval exists
    assert median_ci_ranks(6)[:2] == (1, 6)
    assert median_ci_ranks(10)[:2] == (2, 9)
    assert median_ci_ranks(100)[:2] == (40, 61)


@pytest.mark.parametrize("n", [6, 7, 11, 20, 37, 64, 101, 500, 2000])
def test_median_ci_ranks_are_the_tightest_with_enough_coverage(n):
    lo, hi, coverage = median_ci_ranks(n)
    assert hi == n + 1 - lo
    assert coverage == pytest.approx(1 - 2 * exact_cdf(lo - 1, n, 0.5)) and coverage >= 0.95
    if lo + 1 <= hi - 1:  # one rank further in would cover less than 95 %
        assert 1 - 2 * exact_cdf(lo, n, 0.5) < 0.95


@pytest.mark.parametrize("draw,true_median", [
    (lambda r: r.expovariate(1.0), math.log(2)),          # skewed, like latencies
    (lambda r: r.lognormvariate(0.0, 0.5), 1.0),
    (lambda r: r.uniform(2.0, 4.0), 3.0),
])
def test_median_ci_covers_the_true_median_as_often_as_promised(draw, true_median):
    rng = random.Random(12345)
    n, trials = 30, 2000
    hits = 0
    for _ in range(trials):
        lo, hi = median_ci(sorted(draw(rng) for _ in range(n)))
        hits += lo <= true_median <= hi
    promised = median_ci_ranks(n)[2]  # exact for any continuous distribution
    sd = math.sqrt(promised * (1 - promised) / trials)
    assert abs(hits / trials - promised) < 4 * sd


def test_quantile_thresholds_for_p90_and_p99_at_99_percent():
    assert min_samples_for_quantile(0.90) == 64
    assert min_samples_for_quantile(0.99) == 662
    n = 64
    assert exact_cdf(n - 2, n, 0.9) >= 0.99 > exact_cdf(n - 3, n - 1, 0.9)


def test_tail_percentiles_only_with_enough_samples():
    rng = random.Random(1)
    xs = [rng.random() for _ in range(661)]
    assert summarize(xs[:63]).p90 is None
    assert summarize(xs[:64]).p90 is not None
    assert summarize(xs[:661]).p99 is None
    assert summarize(xs + [0.5]).p99 is not None
    st = LatencyStats.from_samples(xs[:63])
    assert st.p90_s is None and "too few samples" in st.unavailable["p90_s"]
    assert st.p99_s is None and "662" in st.unavailable["p99_s"]


def test_summary_of_known_distributions():
    rng = random.Random(7)
    u = [rng.random() for _ in range(100_000)]
    s = summarize(u)
    assert s.median == pytest.approx(0.5, abs=0.01)
    assert s.p90 == pytest.approx(0.9, abs=0.01)
    assert s.p99 == pytest.approx(0.99, abs=0.005)
    assert s.mean == pytest.approx(0.5, abs=0.01)
    assert s.iqr == pytest.approx(0.5, abs=0.01)
    assert s.ci_low <= s.median <= s.ci_high and s.ci_high - s.ci_low < 0.02
    g = summarize([rng.gauss(10.0, 1.0) for _ in range(20_000)])
    assert g.cv == pytest.approx(0.1, rel=0.05)
    assert g.stdev == pytest.approx(1.0, rel=0.05)


def test_quantile_interpolates_between_order_statistics():
    xs = [1.0, 2.0, 3.0, 4.0]
    assert quantile(xs, 0.0) == 1.0 and quantile(xs, 1.0) == 4.0
    assert quantile(xs, 0.5) == 2.5
    assert quantile(xs, 1 / 3) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_single_sample_has_no_spread_and_no_ci():
    st = LatencyStats.from_samples([0.01])
    assert st.median_s == st.min_s == 0.01
    assert st.cv is None and st.ci_low_s is None and st.ci_rel_halfwidth is None
    assert set(st.unavailable) >= {"cv", "ci_low_s", "p90_s", "p99_s"}


def test_linear_fit_recovers_a_line():
    fit = linear_fit([1, 2, 4, 8, 16, 32], [100 + 7 * b for b in (1, 2, 4, 8, 16, 32)])
    assert fit.intercept == pytest.approx(100) and fit.slope == pytest.approx(7) and fit.r2 == pytest.approx(1)
    with pytest.raises(ValueError):
        linear_fit([3, 3], [1, 2])


@pytest.mark.parametrize("p,df,table", [(0.975, 1, 12.7062), (0.975, 4, 2.7764), (0.975, 9, 2.2622),
                                        (0.995, 9, 3.2498), (0.975, 120, 1.9799)])
def test_t_quantiles_match_the_table(p, df, table):
    assert t_quantile(p, df) == pytest.approx(table, abs=5e-5)


def test_block_medians_of_consecutive_blocks():
    xs = list(range(30))  # 10 blocks of 3: medians 1, 4, 7, ...
    assert block_medians(xs) == [1 + 3 * i for i in range(10)]
    assert block_medians(xs[:14]) is None  # too few for 5 blocks of 3
    assert block_medians(xs[:15]) == [1, 4, 7, 10, 13]
    meds = [10.0] * 5 + [12.0] * 5
    expected = t_quantile(0.975, 9) * statistics.stdev(meds) / math.sqrt(10)
    assert block_ci_halfwidth([m for m in meds for _ in range(3)]) == pytest.approx(expected)


def test_drift_aware_ci_covers_the_median_of_correlated_samples():
    # AR(1) samples (neighbours correlated at 0.9, like a machine drifting between speeds): the
    # order-statistic CI, which assumes independence, covers the true median far less than 95 % of the
    # time; the reported CI (hull with the batch-means interval) comes close to its promise
    rng = random.Random(3)
    trials, n, phi = 300, 300, 0.9
    order_hits = hull_hits = 0
    for _ in range(trials):
        e, xs = rng.gauss(0, 1) / math.sqrt(1 - phi ** 2), []
        for _ in range(n):
            e = phi * e + rng.gauss(0, 1)
            xs.append(10.0 + e)
        s = summarize(xs)
        order_hits += s.ci_order_low <= 10.0 <= s.ci_order_high
        hull_hits += s.ci_low <= 10.0 <= s.ci_high
        assert s.ci_low <= s.ci_order_low and s.ci_high >= s.ci_order_high
    assert order_hits / trials < 0.6
    assert hull_hits / trials > 0.85


def test_drift_aware_ci_is_close_to_the_order_statistic_ci_for_independent_samples():
    rng = random.Random(4)
    ratios = []
    for _ in range(200):
        s = summarize([rng.gauss(10, 1) for _ in range(200)])
        ratios.append(s.drift_rel)
        assert s.ci_blocks == 10
    assert 0.8 < statistics.median(ratios) < 1.4
