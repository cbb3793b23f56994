"""The settings objects of the public path (AccuracyConfig, EnergyProtocol, Budget): each value is checked
once, when the object is built, so the API, the CLI and the object itself refuse it with the same line."""

import inspect

import pytest

from dnnbench import api
from dnnbench.analysis.errors import ConstraintError
from dnnbench.analysis.pick import Budget
from dnnbench.core.accuracy import AccuracyConfig
from dnnbench.core.errors import InputError
from dnnbench.evaluate.accuracy import measure_accuracy
from dnnbench.power.protocol import EnergyProtocol, measure_energy
from tests import synthetic_results as S
from tests.test_power_protocol import ConstantPowerSensor, FakeClock

FACTORY = "python:tests/accuracy_tinynet.py:build"


def _cli_error(capsys, *args) -> str:
    """The one error line of an in-process ``dnnbench ARGS`` that must exit 2."""
    from dnnbench.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("dnnbench: error: "), err
    return err.removeprefix("dnnbench: error: ")


def _error(exc_type, fn) -> str:
    with pytest.raises(exc_type) as info:
        fn()
    return info.value.one_line()


def test_public_functions_take_at_most_eight_parameters():
    import dnnbench.analysis.pick as pick_mod

    for fn in (api.accuracy, measure_accuracy, measure_energy, api.pick, pick_mod.pick):
        assert len(inspect.signature(fn).parameters) <= 8, fn.__qualname__


# ---- AccuracyConfig ----------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, expected", [
    ("batch_size", 0, "--batch-size 0 is not allowed: a batch holds at least one item. Fix: use --batch-size 1 or more."),
    ("limit", 0, "--limit 0 is not allowed: at least one image must be evaluated. Fix: use --limit 1 or more."),
    ("workers", -1, "--workers -1 is not allowed: 0 decodes in the main process, N > 0 in N workers. "
                    "Fix: use --workers 0 or more."),
])
def test_accuracy_setting_is_refused_with_one_line_by_config_api_and_cli(capsys, tmp_path, option, value, expected):
    assert _error(InputError, lambda: AccuracyConfig(**{option: value})) == expected
    # the API checks before it loads the model or reads the data (neither exists here)
    missing = str(tmp_path / "no-such-dir")
    assert _error(InputError, lambda: api.accuracy("python:no/such.py:f", missing, **{option: value})) == expected
    assert _error(InputError, lambda: api.accuracy(FACTORY, missing, AccuracyConfig(), **{option: value})) == expected
    flag = "--" + option.replace("_", "-")
    assert _cli_error(capsys, "accuracy", FACTORY, "--data", missing, flag, str(value)) == expected


def test_accuracy_config_defaults_and_keywords_override_it():
    cfg = AccuracyConfig()
    assert (cfg.weights, cfg.labels, cfg.limit, cfg.batch_size, cfg.workers, cfg.device, cfg.seed,
            cfg.download_weights) == ("DEFAULT", None, None, 64, None, "cpu", 0, False)
    with pytest.raises(InputError, match="--batch-size True is not allowed"):
        AccuracyConfig(batch_size=True)  # a bool is not a batch size, although Python counts it as an int
    with pytest.raises(TypeError, match="unexpected keyword argument 'batchsize'"):
        api.accuracy(FACTORY, ".", batchsize=4)


def test_accuracy_with_a_config_and_an_override_uses_both(tmp_path):
    from tests import accuracy_tinynet as tiny

    val = tmp_path / "val"
    tiny.write_imagefolder(val, 3)
    cfg = AccuracyConfig(weights="random", batch_size=5, workers=0, seed=7)
    a = api.accuracy(FACTORY, str(val), cfg, limit=8)
    assert a.weights == "random" and a.batch_size == 5 and a.workers == 0
    assert a.limit == 8 and a.subset_seed == 7 and a.images == 8
    assert cfg.limit is None  # the override made a new config; the given one is frozen


# ---- EnergyProtocol -----------------------------------------------------------------------------------

def test_energy_protocol_defaults_are_the_protocols():
    p = EnergyProtocol()
    assert (p.settle_s, p.idle_s, p.min_window_s, p.min_periods, p.max_window_s, p.warmup_calls, p.min_coverage,
            p.estimate, p.tdp_w) == (2.0, None, 2.0, 10, 600.0, 1, 0.5, False, None)


@pytest.mark.parametrize("settings, expected", [
    ({"settle_s": -1.0}, "settle_s -1.0 is not allowed: it cannot be negative. Fix: give settle_s 0 or more."),
    ({"min_coverage": 1.5}, "min_coverage 1.5 is not allowed: it is the share of a window the sensor data must "
                            "cover. Fix: give a fraction in [0, 1]."),
    ({"estimate": True}, "a power estimate needs the device's TDP: estimate=True was given without tdp_w. "
                         "Fix: give the TDP in watts (e.g. --estimate-power 65)."),
])
def test_energy_setting_is_refused_with_one_line_by_protocol_and_measure_energy(settings, expected):
    clock = FakeClock()
    sensor = ConstantPowerSensor(clock, 20.0, 50.0, 0.5)
    calls = []
    assert _error(InputError, lambda: EnergyProtocol(**settings)) == expected
    line = _error(InputError, lambda: measure_energy(lambda: calls.append(1), 1, [sensor], clock=clock,
                                                     sleep=clock.sleep, **settings))
    assert line == expected and calls == [] and sensor.windows == []  # refused before anything ran


def test_measure_energy_takes_a_protocol_and_keyword_overrides():
    clock = FakeClock()
    sensor = ConstantPowerSensor(clock, 20.0, 50.0, 0.5)

    def work():
        clock.sleep(0.25)
        sensor.busy(0.25)

    protocol = EnergyProtocol(settle_s=0.0, min_window_s=2.0, min_periods=2, idle_s=1.0)
    [e] = measure_energy(work, 4, [sensor], protocol, min_window_s=3.0, clock=clock, sleep=clock.sleep)
    assert e.status == "measured"
    assert e.window_s == pytest.approx(3.0) and e.idle_window_s == pytest.approx(1.0)  # override, then protocol
    assert e.power_w == pytest.approx(50.0) and e.idle_power_w == pytest.approx(20.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'settle'"):
        measure_energy(work, 4, [sensor], settle=0)


# ---- Budget (pick) -----------------------------------------------------------------------------------

@pytest.mark.parametrize("constraints, flags, expected", [
    ({"batch_size": 0}, ("--batch-size", "0"),
     "--batch-size 0 is not allowed: a batch holds at least one item. Fix: use --batch-size 1 or more."),
    ({"max_latency_ms": -5}, ("--max-latency-ms", "-5"),
     "--max-latency-ms -5 can never be met: every model takes some time, memory and energy. "
     "Fix: give --max-latency-ms a positive value."),
])
def test_budget_is_refused_with_one_line_by_budget_api_and_cli(capsys, tmp_path, constraints, flags, expected):
    missing = str(tmp_path / "none.db")  # refused before the store is opened: it is never created
    assert _error(ConstraintError, lambda: Budget(**constraints)) == expected
    assert _error(ConstraintError, lambda: api.pick(missing, **constraints)) == expected
    assert _error(ConstraintError, lambda: api.pick(missing, Budget(), **constraints)) == expected
    assert _cli_error(capsys, "pick", "--store", missing, *flags) == expected
    assert not (tmp_path / "none.db").exists()


def test_pick_takes_a_budget_and_keyword_overrides(tmp_path):
    store = S.write(str(tmp_path / "s.db"), S.rows(models=["alpha", "beta", "gamma", "delta"]))
    budget = Budget(max_latency_ms=15, where="params>=0")  # one clause as a string is one clause
    assert budget.where == ("params>=0",)
    assert api.pick(store, budget).best.model == "beta"
    assert api.pick(store, budget, max_latency_ms=None).best.model == "delta"  # the override lifts the cap
    assert api.pick(store, max_latency_ms=15).best.model == "beta"  # today's keywords still work
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_latency'"):
        api.pick(store, max_latency=15)
