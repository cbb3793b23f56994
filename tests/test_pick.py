"""`pick` on planted results: the winner, the Pareto set, rejections with their excess, predicted values
labelled with their held-out error, no-fit answers, contradictions and bad input (API and CLI)."""

import json

import pytest

from dnnbench.analysis.errors import ConstraintError, NoResultsError, UnknownMetricError
from dnnbench.analysis.pick import build_constraints, pick
from tests import synthetic_results as S

LINE = ["alpha", "beta", "gamma", "delta"]  # measured, exactly on the planted time line


@pytest.fixture
def df(tmp_path):
    return S.frame(tmp_path, models=LINE)


def _by(res):
    return {c.model: c for c in res.candidates}


def test_no_constraints_picks_the_most_accurate_and_the_whole_monotone_set_is_pareto(df):
    res = pick(df)
    assert res.best.model == "delta" and res.exit_code == 0
    assert res.pareto_axes == ["top1", "latency_per_item_s", "memory_total_bytes", "energy_per_item_j"]
    assert sorted(res.pareto) == sorted(f"torchvision:{m}" for m in LINE + ["epsilon"])
    assert res.setup.label == "cpu (Synthetic CPU 9000, 4 threads), eager, fp32"


def test_latency_budget_with_a_predicted_model_labelled_and_rejections_measured(df):
    res = pick(df, max_latency_ms=15)
    by = _by(res)
    assert res.best.model == "beta"  # 11 ms, the most accurate under 15 ms
    assert [c.model for c in res.feasible] == ["beta", "alpha"]
    eps = by["epsilon"]  # never timed: predicted from MACs, exactly on the planted line
    lat = eps.values["latency_median_s"]
    assert lat.source == "predicted"
    assert lat.value == pytest.approx(S.time_per_image("epsilon", 1))
    assert lat.error == pytest.approx(0, abs=1e-9)  # held-out error of an exact line
    assert eps.values["memory_total_bytes"].source == "predicted"
    assert eps.values["memory_total_bytes"].value == pytest.approx(S.memory_total("epsilon", 1))
    [v] = eps.violations
    assert v.excess == pytest.approx(0.016 - 0.015)
    [g] = by["gamma"].violations
    assert g.value.source == "measured" and g.excess == pytest.approx(0.006) and g.excess_rel == pytest.approx(0.4)
    d = res.to_dict()
    assert d["best"]["model"] == "beta"
    rejected = {r["model"]: r for r in d["rejected"]}
    assert rejected["epsilon"]["violations"][0]["value"]["source"] == "predicted"
    assert "held_out_error" in rejected["epsilon"]["violations"][0]["value"]
    json.dumps(d)  # JSON-ready


def test_memory_and_energy_budgets(df):
    res = pick(df, max_memory_mb=345)  # beta: 300 MiB floor + 40 MB weights + 6 MiB = 344.1 MiB
    assert res.best.model == "beta"
    assert "epsilon" not in [c.model for c in res.feasible]
    res = pick(df, max_energy_mj=150)  # 20 W x 6 ms = 120 mJ for alpha; beta 220 mJ
    assert [c.model for c in res.feasible] == ["alpha"]
    eps = _by(res)["epsilon"]
    assert eps.values["energy_per_item_j"].source == "predicted"
    assert eps.values["energy_per_item_j"].value == pytest.approx(20 * S.time_per_image("epsilon", 1))
    res = pick(df, max_power_w=25, batch_size=4)  # power is 30 W at batch 4 for every model
    assert res.best is None and res.binding[0]["constraint"] == "--max-power-w 25"


def test_nothing_fits_names_the_binding_constraint_and_the_closest(df):
    res = pick(df, min_top1=0.9)
    assert res.best is None and res.exit_code == 3
    assert res.binding[0]["constraint"] == "--min-top1 0.9"
    assert res.closest[0].model == "delta"
    # percent and fraction mean the same
    assert pick(df, min_top1=90).closest[0].model == "delta"


def test_binding_is_the_constraint_whose_relaxation_admits_models(df):
    res = pick(df, max_latency_ms=5, min_top1=0.75)
    assert res.best is None
    first = res.binding[0]
    assert first["constraint"] == "--max-latency-ms 5"  # alone it stops gamma, delta and epsilon
    assert set(first["only_obstacle_for"]) == {"torchvision:gamma", "torchvision:delta", "torchvision:epsilon"}


def test_objective_throughput_and_where_clause(df):
    assert pick(df, objective="throughput_items_per_s").best.model == "alpha"
    res = pick(df, where=["params<=12e6"])
    assert res.best.model == "beta"


def test_oom_cell_rules_the_model_out_with_its_status(tmp_path):
    df = S.frame(tmp_path, models=LINE, oom=(("delta", 1),))
    res = pick(df)
    assert res.best.model == "gamma"
    [v] = _by(res)["delta"].violations
    assert "oom" in v.value.note


def test_unmeasured_batch_size_cannot_be_checked_and_says_why(df):
    res = pick(df, batch_size=64, max_latency_ms=1000)
    assert res.best is None
    notes = [v.value.note for c in res.candidates for v in c.violations]
    assert all("not measured at batch 64" in n for n in notes)
    assert res.cost_model.time is None


def test_profile_only_store_ranks_by_published_top1(tmp_path):
    df = S.frame(tmp_path, models=[])
    res = pick(df)
    assert res.best.model == "epsilon" and res.setup is None
    with pytest.raises(UnknownMetricError):
        pick(df, where=["latency_p90_s<=0.1"])  # nothing was timed: the column does not exist


@pytest.mark.parametrize("kw, match", [
    ({"max_latency_ms": -5}, "--max-latency-ms -5 can never be met"),
    ({"max_memory_mb": 0}, "--max-memory-mb 0 can never be met"),
    ({"min_throughput": 0}, "--min-throughput 0 can never be met"),
    ({"min_top1": 150}, "--min-top1 150 can never be met"),
    ({"where": ["latency_median_s>=0.1"], "max_latency_ms": 50}, "contradict"),
    ({"where": ["throughput_items_per_s<=100"], "max_latency_ms": 1}, "contradict"),
    ({"where": ["latency oops"]}, "malformed"),
    ({"batch_size": 0}, "--batch-size 0"),
])
def test_contradictions_and_invalid_budgets_are_refused_up_front(kw, match):
    with pytest.raises(ConstraintError, match=match):
        build_constraints(**kw)


def test_latency_cap_and_throughput_floor_do_not_contradict():
    # at batch 1, 1 ms already implies >= 1000 images/s; asking for 2000/s only tightens it
    cons = build_constraints(1, max_latency_ms=1, min_throughput=2000)
    assert [c.metric for c in cons] == ["latency_median_s", "throughput_items_per_s"]


def test_unknown_metric_and_empty_store(df):
    with pytest.raises(UnknownMetricError, match="unknown objective 'speed'"):
        pick(df, objective="speed")
    with pytest.raises(UnknownMetricError, match="unknown constraint metric 'latncy_s'"):
        pick(df, where=["latncy_s<=1"])
    import pandas as pd

    with pytest.raises(NoResultsError, match="dnnbench study"):
        pick(pd.DataFrame(), store_where="x.db")


# ---- CLI (in process: fast) -----------------------------------------------------------------------

def _main(capsys, *args):
    from dnnbench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
        raise SystemExit(0)
    cap = capsys.readouterr()
    return exc.value.code or 0, cap.out, cap.err


@pytest.fixture
def store(tmp_path):
    return S.write(str(tmp_path / "s.db"), S.rows(models=LINE))


def test_cli_pick_table_marks_predictions_and_the_best(capsys, store):
    code, out, _ = _main(capsys, "pick", "--store", store, "--max-latency-ms", "15")
    assert code == 0
    assert "best: beta" in out
    assert "pred ±0.0 %" in out  # epsilon's predicted values with their held-out error (exact line: 0)
    assert "breaks --max-latency-ms 15 by" in out


def test_cli_pick_json_and_no_fit_exit_code(capsys, store):
    code, out, _ = _main(capsys, "pick", "--store", store, "--min-top1", "95", "--format", "json")
    assert code == 3
    d = json.loads(out)
    assert d["best"] is None and d["exit_code"] == 3 and d["binding"][0]["constraint"] == "--min-top1 95"


@pytest.mark.parametrize("args, text", [
    (("--max-latency-ms", "-1"), "can never be met"),
    (("--objective", "speed"), "unknown objective"),
    (("--where", "latency_median_s>=1", "--max-latency-ms", "10"), "contradict"),
])
def test_cli_pick_bad_input_is_one_line_exit_2(capsys, store, args, text):
    code, out, err = _main(capsys, "pick", "--store", store, *args)
    assert code == 2 and text in err and len(err.strip().splitlines()) == 1 and err.startswith("dnnbench: error:")


def test_cli_pick_missing_store_says_how_to_fill_it(capsys, tmp_path):
    code, _, err = _main(capsys, "pick", "--store", str(tmp_path / "none.db"))
    assert code == 2 and "dnnbench study" in err
    assert not (tmp_path / "none.db").exists()  # asking did not create an empty store


def test_device_without_measurements_is_a_one_line_error(df):
    with pytest.raises(NoResultsError, match="nothing was measured on device 'cuda'.*holds measurements on cpu"):
        pick(df, device="cuda")
    assert pick(df, device="cpu").best.model == "delta"
