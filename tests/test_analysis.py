"""Analysis on synthetic results with planted answers: fits, Pareto fronts, memory, cost model, findings."""

import math

import numpy as np
import pytest

from dnnbench.analysis.findings import findings as all_findings
from dnnbench.analysis.costmodel import fit_cost_model
from dnnbench.analysis.fit import LinearFit, hyperbolic_fit, linear_fit, loglog_slope, mean_with_loo
from dnnbench.analysis.memory import batch_fits, floor_vs_weights, largest_batch
from dnnbench.analysis.pareto import pareto_front
from dnnbench.analysis.tables import bench_table, choose_setup, models_table, setups, warnings_table
from tests import synthetic_results as S


# ---- fits ----------------------------------------------------------------------------------------

def test_linear_fit_recovers_planted_slope_intercept_and_r2():
    # residuals e are orthogonal to 1 and x, so OLS returns the planted line exactly and
    # R² = 1 - SS_res / SS_tot = 1 - 4 / (40 + 4) = 10/11
    x = [0, 1, 2, 3, 4]
    e = [1, -1, 0, -1, 1]
    y = [1 + 2 * xi + ei for xi, ei in zip(x, e)]
    f = linear_fit(x, y, list("abcde"))
    assert f.slope == pytest.approx(2.0)
    assert f.intercept == pytest.approx(1.0)
    assert f.r2 == pytest.approx(10 / 11)
    assert f.n == 5
    assert set(f.loo_errors) == set("abcde")


def test_exact_line_has_r2_one_and_zero_held_out_error():
    f = linear_fit([1, 2, 3, 4], [3, 5, 7, 9])
    assert (f.slope, f.intercept, f.r2) == (pytest.approx(2), pytest.approx(1), pytest.approx(1))
    assert f.loo_median_abs_error == pytest.approx(0, abs=1e-12)
    assert f.predict(10) == pytest.approx(21)


def test_leave_one_out_error_is_the_error_of_predicting_each_point_from_the_others():
    # points (0,0), (1,1), (2,2), (3,6): leaving out (3,6), the others fit y = x, predicting 3 -> error -0.5
    f = linear_fit([0, 1, 2, 3], [0.0, 1.0, 2.0, 6.0], ["a", "b", "c", "d"])
    assert f.loo_errors["d"] == pytest.approx((3 - 6) / 6)


def test_two_points_have_no_held_out_error_and_one_point_no_line():
    f = linear_fit([1, 2], [1, 3])
    assert f.loo_errors == {} and f.loo_median_abs_error is None
    with pytest.raises(ValueError):
        linear_fit([1], [1])
    with pytest.raises(ValueError):
        linear_fit([2, 2, 2], [1, 2, 3])  # no spread in x: no slope


@pytest.mark.parametrize("ys", [[2.0, 2.0, 2.0], [0.1, 0.1, 0.1], [0.3] * 5])
def test_r2_of_constant_y_is_unavailable_with_the_reason(ys):
    # 0.1 * 3 sums to 0.30000000000000004: SS_tot around that rounded mean is ~1e-33, not 0, and the old
    # fits returned R² 0.0 for it (and 1.0 or None for 2.0: the two classes disagreed)
    f = linear_fit(list(range(len(ys))), ys)
    assert f.r2 is None and "same value at every point" in f.unavailable["r2"]
    assert f.slope == pytest.approx(0, abs=1e-12) and f.intercept == pytest.approx(ys[0])
    assert f.to_dict()["unavailable"] == {"r2": f.unavailable["r2"]}
    assert hyperbolic_fit([0.001, 0.002, 0.004], ys[:3]).r2 is None  # a constant accuracy: same rule


def test_one_linear_fit_for_bench_and_analysis():
    from dnnbench.core import stats

    assert stats.LinearFit is LinearFit and stats.linear_fit is linear_fit
    f = stats.linear_fit([1, 2, 4], [110, 120, 140])  # bench's memory fit: floor + slope x batch
    assert (f.intercept, f.slope, f.r2, f.n) == (pytest.approx(100), pytest.approx(10), pytest.approx(1), 3)
    assert f.labels == ["0", "1", "2"] and not f.unavailable
    with pytest.raises(ValueError, match="differ in length"):
        linear_fit([1, 2, 3], [1, 2])
    g = linear_fit([1, 2, None, 4, float("nan")], [2, 4, 5, 8, 9], list("abcde"))  # missing points left out
    assert g.labels == ["a", "b", "d"] and g.slope == pytest.approx(2)


def test_off_line_names_the_planted_outlier():
    x = [1, 2, 3, 4, 5, 0.5]
    y = [2, 4, 6, 8, 10, 3.0]  # last point is 3x its line value (1.0)
    f = linear_fit(x[:-1], y[:-1], list("abcde"))
    pts = linear_fit(x, y, list("abcdez"))
    assert f.off_line() == {}
    assert "z" in pts.off_line(1.5)


def test_hyperbolic_fit_recovers_ceiling_and_k():
    times = [0.001, 0.002, 0.005, 0.01, 0.05]
    acc = [0.8 - 0.0001 / t for t in times]
    f = hyperbolic_fit(times, acc)
    assert f.ceiling == pytest.approx(0.8)
    assert f.k == pytest.approx(0.0001)
    assert f.r2 == pytest.approx(1.0)
    assert f.time_for(0.75) == pytest.approx(0.0001 / 0.05)
    assert f.time_for(0.85) is None  # above the ceiling: unreachable


def test_loglog_slope_and_mean_loo():
    assert loglog_slope([1, 4, 16], [1.0, 0.5, 0.25]) == pytest.approx(-0.5)
    mean, loo = mean_with_loo({"a": 10.0, "b": 20.0})
    assert mean == 15 and loo == {"a": pytest.approx(1.0), "b": pytest.approx(-0.5)}


# ---- Pareto --------------------------------------------------------------------------------------

def test_planted_pareto_front():
    pts = {
        "fast": {"acc": 0.60, "t": 1.0},
        "mid": {"acc": 0.70, "t": 2.0},
        "slow_best": {"acc": 0.80, "t": 5.0},
        "dominated": {"acc": 0.65, "t": 3.0},  # mid is faster and more accurate
        "tie_of_mid": {"acc": 0.70, "t": 2.0},  # equal to mid: both kept
        "missing": {"acc": 0.99, "t": None},  # cannot be compared: left out
    }
    assert pareto_front(pts, maximize=["acc"], minimize=["t"]) == ["fast", "mid", "slow_best", "tie_of_mid"]


def test_pareto_three_objectives():
    pts = {"a": {"x": 1, "y": 1, "z": 1}, "b": {"x": 1, "y": 1, "z": 2}, "c": {"x": 0, "y": 0.5, "z": 0}}
    assert pareto_front(pts, maximize=["y"], minimize=["x", "z"]) == ["a", "c"]


# ---- memory --------------------------------------------------------------------------------------

def test_largest_batch():
    assert largest_batch(100, 10, 1000) == 90
    assert largest_batch(100, 10, 50) == 0
    assert largest_batch(100, 0, 1000) is None


def test_memory_fits_recover_planted_floor_and_slope(tmp_path):
    df = S.frame(tmp_path)
    b = bench_table(df, choose_setup(df))
    fits = batch_fits(b)
    g = fits["gamma"]
    _, params, _, act = S.MODELS["gamma"]
    assert g.floor_bytes == pytest.approx(S.FLOOR + 4 * params)
    assert g.slope_bytes_per_item == pytest.approx(act)
    assert g.static_slope_bytes_per_item == pytest.approx(act)
    assert g.slope_ratio == pytest.approx(1.0)
    assert g.largest_batch(S.FLOOR + 4 * params + 10 * act) == 10
    fw = floor_vs_weights(b, 1)  # memory at batch 1 = FLOOR + act + weights: slope 1 only if act is equal, so check R²
    assert fw.n == len(S.MODELS)
    assert fw.slope == pytest.approx(1.0, rel=0.05)


# ---- tables and cost model -----------------------------------------------------------------------

def test_tables_from_a_synthetic_store(tmp_path):
    df = S.frame(tmp_path)
    [setup] = setups(df)
    assert (setup.device, setup.threads, setup.cells, setup.hardware) == ("cpu", 4, 15, "Synthetic CPU 9000")
    m = models_table(df)
    assert m.loc["torchvision:epsilon", "macs_per_item"] == pytest.approx(1.5e9)
    assert m.loc["torchvision:alpha", "top1_source"] == "published"
    assert m.loc["torchvision:alpha", "paper_top1"] == pytest.approx(0.70)
    b = bench_table(df, setup)
    assert len(b) == 15 and b["gmacs_per_item"].round(6).isin([0.3, 0.5, 1.0, 2.0, 4.0]).all()
    row = b[(b["model_ref"] == "torchvision:gamma") & (b["batch_size"] == 4)].iloc[0]
    _, params, _, act = S.MODELS["gamma"]
    assert row["memory_tensors_bytes"] == 4 * params + act * 4 - 2**20  # weights + the allocator's activation peak
    assert row["memory_model_bytes"] == 4 * params + act * 4 + 20 * 2**20  # RSS above baseline: more
    w = warnings_table(df)
    assert w == [{"model": "gamma", "batch_size": 16, "group": "time+memory+power", "device": "cpu", "kind": "note",
                  "message": "std dev is 12.0 % of the mean (above 10 %): the machine may be busy",
                  "remedy": "close other programs"}]


def test_paper_top1_falls_back_to_the_package_table_for_shorthand_refs():
    from dnnbench.analysis import paper

    assert paper.paper_top1("resnet18") == pytest.approx(0.6931)
    assert paper.paper_top1("torchvision:resnet18") == pytest.approx(0.6931)
    assert paper.paper_top1("nonesuch") is None


def test_cost_model_recovers_the_planted_time_line(tmp_path):
    df = S.frame(tmp_path, models=["alpha", "beta", "gamma", "delta"])
    b = bench_table(df, choose_setup(df))
    cm = fit_cost_model(b, 4)
    assert cm.time.slope * 1e9 == pytest.approx(S.T1 * S.BATCH_GAIN[4])
    assert cm.time.intercept == pytest.approx(S.T0 * S.BATCH_GAIN[4])
    assert cm.time.r2 == pytest.approx(1.0)
    assert cm.time.loo_median_abs_error == pytest.approx(0, abs=1e-9)
    p = cm.predict_time_per_item(1.5e9)
    assert p.value == pytest.approx(S.time_per_image("epsilon", 4))
    assert cm.power_w == pytest.approx(S.POWER[4])
    empty = fit_cost_model(b, 64)
    assert empty.time is None and "batch 64" in empty.why["time"]


# ---- findings ------------------------------------------------------------------------------------

def test_findings_state_numbers_and_name_the_planted_outlier(tmp_path):
    df = S.frame(tmp_path)
    found = {f.key: f for f in all_findings(df)}
    ops = found["ops_time"]
    assert ops.available
    fit_b1 = next(f for f in ops.data["fits"] if f["batch_size"] == 1)
    assert "dwnet" in fit_b1["off_line"] and fit_b1["off_line"]["dwnet"] > 1.5
    fit_b4 = next(f for f in ops.data["fits"] if f["batch_size"] == 4)
    assert fit_b4["r2"] == pytest.approx(1.0) and fit_b4["slope"] == pytest.approx(S.T1 * 0.5)  # s per GMAC
    assert any("dwnet" in d and "slower" in d and "depthwise" not in d for d in ops.details)  # name has no known family
    assert found["memory"].available and "floor" in found["memory"].text
    pw = found["power"]
    assert pw.available and "20 W" in pw.text and "35 W" in pw.text
    dens = found["density"]
    assert dens.data["ranking"][0]["model"] == "dwnet"  # 72 points over 3 M params
    par = found["pareto"]
    assert par.data["latency_per_item_s"][0] == "alpha"  # fastest at batch 1 (dwnet is planted slow)
    assert found["accuracy_time"].available and found["accuracy_time"].data["k"] > 0
    assert found["batching"].data["loglog_slopes"]["alpha"] == pytest.approx(-0.5)
    assert found["paper_top1"].available and "alpha" in found["paper_top1"].details[0]


def test_findings_without_power_say_how_to_get_it(tmp_path):
    df = S.frame(tmp_path, power=False)
    pw = next(f for f in all_findings(df) if f.key == "power")
    assert not pw.available and "--metrics time,memory,power" in pw.text and "dnnbench sensors" in pw.text


def test_findings_on_a_profile_only_store(tmp_path):
    df = S.frame(tmp_path, batches=(1,), models=[])
    found = {f.key: f for f in all_findings(df)}
    assert found["density"].available
    assert not found["ops_time"].available and "dnnbench study" in found["ops_time"].text
    assert all(f.text for f in found.values())


def _ops_time_with(tmp_path, name: str, factor: float):
    """ops_time over the synthetic store with "dwnet" renamed ``name`` and its batch-1 time ``factor`` x its
    MACs' line T0 + T1 x GMACs; also returns that model's measured / fitted ratio, by an independent fit."""
    from dnnbench.store import open_store

    line = S.T0 + S.T1 * S.MODELS["dwnet"][0]
    cells = []
    for c in S.rows():
        if "dwnet" in c.model_ref:
            c.model_ref, c.cell_id = f"torchvision:{name}", f"{c.cell_id}-{name}"
            if c.batch_size == 1 and c.metric_group != "profile":
                c.metrics = {**c.metrics, "latency_per_item_s": line * factor, "latency_median_s": line * factor}
        cells.append(c)
    with open_store(S.write(f"sqlite:///{tmp_path / f'{name}.db'}", cells)) as st:
        ops = next(f for f in all_findings(st.frame()) if f.key == "ops_time")
    gm = {m: v[0] for m, v in S.MODELS.items()}
    ys = {m: line * factor if m == "dwnet" else S.time_per_image(m, 1) for m in gm}
    slope, intercept = np.polyfit(list(gm.values()), [ys[m] for m in gm], 1)
    return ops, ys["dwnet"] / (intercept + slope * gm["dwnet"])


def test_depthwise_family_is_hinted_when_slower_than_its_macs_say(tmp_path):
    ops, r = _ops_time_with(tmp_path, "mobilenet_v2", 3.0)
    assert r > 1.5  # planted far above the line even after the line bends towards it
    b1, b4, b16 = ops.details
    assert b1.startswith("cpu, batch 1:")
    assert b1.endswith(f"Off the line: mobilenet_v2 {r:.1f}x slower than the line — depthwise/grouped convolutions (likely).")
    assert ops.data["fits"][0]["off_line"] == {"mobilenet_v2": pytest.approx(r)}
    assert "depthwise" not in b4 + b16 and "Off the line" not in b4 + b16  # on the line at batch 4 and 16
    assert "slower than their MACs say: mobilenet_v2." in ops.text


def test_no_depthwise_hint_for_other_names_or_for_a_faster_model(tmp_path):
    slow, r = _ops_time_with(tmp_path, "dwnet", 3.0)  # slow, but not a depthwise family by name
    assert f"Off the line: dwnet {r:.1f}x slower than the line." in slow.details[0]
    fast, r = _ops_time_with(tmp_path, "efficientnet_b0", 0.1)  # a depthwise family, but fast: nothing to explain
    assert r < 1 / 1.5
    assert f"Off the line: efficientnet_b0 {1 / r:.1f}x faster than the line." in fast.details[0]
    assert not any("depthwise" in d for d in slow.details + fast.details)


def test_two_setups_are_kept_apart_and_the_larger_one_is_primary(tmp_path):
    cells = S.rows()
    for c in S.rows(models=["alpha", "beta"], batches=(1,), profile_only=False):
        if c.metric_group != "profile":
            c.cell_id += "-t1"
            c.threads = 1
            c.metrics = {**c.metrics, "latency_per_item_s": c.metrics["latency_per_item_s"] * 3}
            cells.append(c)
    S.write(f"sqlite:///{tmp_path / 'two.db'}", cells)
    from dnnbench.store import open_store

    with open_store(f"sqlite:///{tmp_path / 'two.db'}") as st:
        df = st.frame()
    found = setups(df)
    assert [(s.threads, s.cells) for s in found] == [(4, 15), (1, 2)]
    assert choose_setup(df) == found[0]
    slow = bench_table(df, found[1])
    assert len(slow) == 2 and slow["latency_per_item_s"].iloc[0] == pytest.approx(3 * S.time_per_image("alpha", 1))
    ops = next(f for f in all_findings(df) if f.key == "ops_time")
    assert {f["setup"].split(", eager")[0] for f in ops.data["fits"]} == {
        "cpu (Synthetic CPU 9000, 4 threads)", "cpu (Synthetic CPU 9000, 1 thread)"}
