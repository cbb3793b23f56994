"""Runtimes and precisions: the plug-in registry and availability, the equivalence check, eager/compile/onnxruntime
cells through the same worker, ONNX files benched through ONNX Runtime, the study's cell identity, the report's
side-by-side table, and bad input (missing extra, a model that does not export, combinations that cannot run)."""

import json
import sys
import warnings
from dataclasses import replace

import pytest
import torch

from dnnbench import api, runner
from dnnbench.cli import main
from dnnbench.core.errors import InputError, MissingExtraError
from dnnbench.core.measurements import BenchCell, Equivalence
from dnnbench import runtimes
from dnnbench.runtimes import precision as prec

CNN = "python:tests/runtime_models.py:small_cnn"
FAST = dict(threads=1, max_time_per_cell=0.5, min_samples=3, sensors="none")
MISSING_ORT = "onnxruntime is needed for --runtime onnxruntime: pip install 'dnnbench[onnx]'"


# ---- registry, availability, precisions ----------------------------------------------------------------------

def test_registry_and_availability_here():
    assert runtimes.RUNTIMES.names() == ["compile", "eager", "executorch", "onnxruntime", "openvino"]
    for name in ("eager", "compile", "onnxruntime"):
        a = runtimes.availability(name, "cpu")
        assert a.ok, a  # this machine has gcc and the onnx extra
    with pytest.raises(InputError, match="unknown runtime 'tvm'"):
        runtimes.get("tvm")


def test_missing_extra_is_one_line_naming_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    a = runtimes.availability("onnxruntime")
    assert not a.ok and a.missing_extra
    with pytest.raises(MissingExtraError) as info:
        api.runtime_configs("resnet18", "onnxruntime")
    assert info.value.one_line().rstrip(".") == MISSING_ORT
    # with "all" it is left out with the same reason; the other runtimes still run
    configs, left = api.runtime_configs("resnet18", "all")
    assert ("onnxruntime", "fp32") not in configs and ("eager", "fp32") in configs
    assert left == [("onnxruntime", MISSING_ORT + ".")]
    for argv in (["bench", "resnet18", "--runtime", "onnxruntime", "--sensors", "none"],
                 ["study", "resnet18", "--runtime", "onnxruntime", "--store", "/nonexistent/never-created.db"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err == f"dnnbench: error: {MISSING_ORT}.\n"
    # `dnnbench runtimes` lists it as unavailable with the same reason, and exits 0
    main(["runtimes", "--format", "json"])
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["eager"]["available"] and rows["compile"]["available"] and not rows["onnxruntime"]["available"]
    assert f"{rows['onnxruntime']['reason']}: {rows['onnxruntime']['fix']}" == MISSING_ORT
    assert rows["onnxruntime"]["precisions"]["bf16"]["runs"] is False


def test_combinations_that_cannot_run_are_left_out_with_why():
    configs, left = api.runtime_configs("resnet18", "all", "all")
    assert ("onnxruntime", "bf16") not in configs and ("eager", "bf16") in configs and ("compile", "int8-dynamic") in configs
    ours = [(label, why) for label, why in left if label.split()[0] in ("eager", "compile", "onnxruntime")]
    assert [label for label, _ in ours] == ["compile int8", "onnxruntime bf16"] and "bfloat16" in ours[1][1]
    assert "PT2E" in ours[0][1]  # static int8 under compile is left out with why
    with pytest.raises(InputError, match="no bfloat16"):
        api.runtime_configs("resnet18", "onnxruntime", "bf16")
    with pytest.raises(InputError, match="--runtime jit is not known"):
        api.runtime_configs("resnet18", "jit")
    with pytest.raises(InputError, match="--precision int4 is not known"):
        api.runtime_configs("resnet18", "eager", "int4")
    with pytest.raises(InputError, match="--precision int4 is not known"):  # a study refuses it before measuring
        runner.study(["resnet18"], precisions="int4", store="/nonexistent/never-created.db")
    # an ONNX file runs only under onnxruntime, which is its default
    assert api.runtime_configs("onnx:m.onnx")[0] == [("onnxruntime", "fp32")]
    with pytest.raises(InputError, match="cannot run under --runtime eager"):
        api.runtime_configs("onnx:m.onnx", "eager")


def test_precision_support_reads_the_cpu_flags():
    assert prec.support("bf16", "cpu", frozenset({"avx512f", "avx512_bf16"})).native
    amx = prec.support("bf16", "cpu", frozenset({"amx_bf16"}))
    assert amx.ok and amx.native and amx.note == ""
    plain = prec.support("bf16", "cpu", frozenset({"avx2", "avx512f"}))
    assert plain.ok and not plain.native and "avx512_bf16" in plain.note
    fp16 = prec.support("fp16", "cpu", frozenset({"avx2"}))
    assert fp16.ok and not fp16.native and "avx512_fp16" in fp16.note
    assert prec.support("fp32", "cpu").native


# ---- the equivalence check ------------------------------------------------------------------------------------

def test_compare_max_diff_and_top1_agreement():
    ref = torch.tensor([[0.0, 1.0, 0.5], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.9, 0.0]])
    out = ref.clone()
    out[3] = torch.tensor([0.9, 1.0, 0.0])  # row 3's argmax flips: 3 of 4 rows agree
    eq = runtimes.compare([ref], [out], "eager fp32")
    assert eq.top1_agreement == 0.75 and eq.rows == 4
    assert eq.max_abs_diff == pytest.approx(0.1) and eq.mean_abs_diff == pytest.approx(0.2 / 12)
    assert eq.reference_max_abs == 3.0
    bad = out.clone()
    bad[0, 0] = float("inf")
    eq = runtimes.compare([ref], [bad], "eager fp32")
    assert eq.max_abs_diff is None and "NaN or infinite" in eq.unavailable["max_abs_diff"]
    eq = runtimes.compare([ref], [ref[:2]], "eager fp32")
    assert eq.max_abs_diff is None and "do not match" in eq.unavailable["max_abs_diff"]


# ---- cells under each runtime and precision (in-process: fast) -----------------------------------------------

def _cells(ref=CNN, sizes=(2,), **kw):
    run = api.bench(ref, batch_sizes=list(sizes), in_process=True, **FAST, **kw)
    return run, run.cells


# How far a configuration may move an output, as a fraction of the reference's largest |output|: fp32 is the same
# arithmetic in another order (a few float32 ulps, 2^-23, per layer); fp16 and bf16 keep 11 and 8 significant bits
# (8 ulps: 2^-7 and 2^-4); dynamic int8 rounds each Linear's input and weights to 1/127 of their largest |value|
# (4 such steps). Measured here: 2e-7, 2e-4, 4e-3, 5e-3.
REL_TOL = {"fp32": 1e-5, "fp16": 2**-7, "bf16": 2**-4, "int8-dynamic": 4 / 127}


def _reference_logits(ref: str, batch_size: int, seed: int) -> torch.Tensor:
    """Eager fp32's output on a cell's own input: the worker's model (its loader) and input generator."""
    lm = api.BenchLoader(ref, "cpu")()
    args, kwargs = lm.inputs.make(batch_size, "cpu", torch.Generator(device="cpu").manual_seed(seed))
    with torch.inference_mode():
        return lm.module.eval()(*args, **kwargs)


def _margins(logits: torch.Tensor) -> list[float]:
    """Per row: the top logit minus the runner-up."""
    top2 = logits.topk(2, dim=-1).values
    return (top2[:, 0] - top2[:, 1]).tolist()


def _assert_agreement_bound(agreement: float, rows: int, max_abs_diff: float, margins: list[float]) -> None:
    """No output moved more than ``max_abs_diff``, so a row whose reference margin exceeds twice that keeps its
    top-1 class: at least those rows agree (all of them when every margin is that wide)."""
    assert rows == len(margins) and (agreement * rows) == pytest.approx(round(agreement * rows))  # k of n rows
    safe = sum(m > 2 * max_abs_diff for m in margins)
    assert safe >= 1  # the bound says something: some row's top-1 cannot have flipped
    assert safe / rows <= agreement <= 1.0


@pytest.mark.parametrize("runtime, precision", [
    ("eager", "bf16"), ("eager", "int8-dynamic"), ("onnxruntime", "fp32"), ("onnxruntime", "fp16"),
    ("onnxruntime", "int8-dynamic")])
def test_non_reference_configurations_are_checked_against_eager_fp32(runtime, precision):
    run, (cell,) = _cells(runtime=runtime, precision=precision)
    assert cell.status == "ok", cell.message
    assert (run.runtime, run.precision) == (runtime, precision) and cell.spec.runtime == runtime
    eq = cell.equivalence
    assert eq is not None and eq.reference == "eager fp32" and eq.rows == 2
    ref = _reference_logits(CNN, 2, cell.spec.seed)
    assert eq.reference_max_abs == pytest.approx(float(ref.abs().max()))  # compared with that very output
    assert 0 < eq.max_abs_diff <= REL_TOL[precision] * eq.reference_max_abs
    _assert_agreement_bound(eq.top1_agreement, eq.rows, eq.max_abs_diff, _margins(ref))
    if precision == "fp32":  # the same model at the same precision: every row's class is the same
        assert eq.top1_agreement == 1.0 and eq.max_abs_diff < 1e-5
    assert cell.latency_s.median_s > 0 and cell.prepare_s is not None
    from dnnbench.core.view import metrics

    d = cell.to_dict()
    assert d["spec"]["runtime"] == runtime and metrics(cell.to_record()).get("equivalence_max_abs_diff") == eq.max_abs_diff
    back = BenchCell.from_dict(json.loads(json.dumps(d)))
    assert back.equivalence == eq and back.runtime_info.details == cell.runtime_info.details
    if runtime == "onnxruntime":
        det = cell.runtime_info.details
        assert det["exporter"].startswith("torch.onnx.export") and det["batch_axis"] == "dynamic"
        assert det["intra_op_num_threads"] == 1 and det["providers"] == ["CPUExecutionProvider"]
    if precision == "int8-dynamic":
        assert cell.runtime_info.details["quantized_layers"] == 2  # the two Linear layers; the conv stays fp32
        assert any("convolutions" in n and "fp32" in n for n in cell.runtime_info.notes)
    if precision in ("bf16", "fp16"):  # this CPU has neither natively: the cell says so
        assert any(w.kind == "precision" for w in cell.warnings) == (not prec.support(precision, "cpu").native)
    # the fp32 peak of `dnnbench machine` is not this precision's
    assert cell.roofline.fraction_of_peak is None


def test_eager_fp32_is_the_reference_and_unchanged():
    _, (cell,) = _cells()
    assert cell.status == "ok" and cell.equivalence is None and cell.spec.is_reference
    assert cell.runtime_info.prepare_peak_rss_bytes is None  # the peak was not restarted: as before runtimes


@pytest.mark.slow
def test_compile_records_its_compilation_as_the_cold_start():
    # a two-layer MLP: Inductor still generates and compiles C++ (15-60 s on 2 cores), as small as it gets
    _, (cell,) = _cells("python:tests/bench_models.py:tiny", runtime="compile")
    assert cell.status == "ok", cell.message
    det = cell.runtime_info.details
    assert det["graphs"] >= 1 and det["graph_breaks"] == 0
    # the first call compiled (seconds); steady calls take well under a millisecond here
    assert cell.cold_start_s > 50 * cell.latency_s.median_s and cell.cold_start_s > 0.5
    assert cell.equivalence.max_abs_diff < 1e-4 and cell.equivalence.top1_agreement == 1.0 and cell.equivalence.rows == 2
    assert cell.timing.warmup_s  # the timing loop's own first call was kept as a warm-up call


def test_a_model_that_does_not_export_fails_its_cell_with_the_reason():
    run, (cell,) = _cells("python:tests/runtime_models.py:unexportable", runtime="onnxruntime")
    assert cell.status == "error"
    assert "exporting the model to ONNX failed" in cell.message and "special_i1e" in cell.message
    assert "\n" not in cell.message


# ---- ONNX files as models ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cnn_files(tmp_path_factory):
    import tests.runtime_models as rm

    tmp = tmp_path_factory.mktemp("files")
    model, example = rm.small_cnn()
    model.eval()
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["dynamic"] = tmp / "cnn.onnx"
        torch.onnx.export(model, (example,), out["dynamic"], dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
        out["fixed"] = tmp / "cnn_b1.onnx"
        torch.onnx.export(model, (example,), out["fixed"], dynamo=False, input_names=["x"])
    return model, out


def test_an_onnx_file_is_benched_through_onnxruntime(cnn_files):
    model, files = cnn_files
    run, cells = _cells(f"onnx:{files['dynamic']}", sizes=(1, 3))
    assert run.runtime == "onnxruntime" and [c.status for c in cells] == ["ok", "ok"]
    assert cells[0].equivalence is None  # the file at fp32 is its own reference
    assert cells[0].runtime_info.details["source"] == "the ONNX file as given"
    # the static figures come from the graph, and match the torch counter's MACs
    assert cells[1].static.macs == api.profile(model, batch_size=3, input_size=16).macs
    run, (cell,) = _cells(f"onnx:{files['dynamic']}", precision="int8-dynamic")
    assert cell.status == "ok" and cell.equivalence.reference == "onnxruntime fp32 (the file as given)"
    assert 0 < cell.equivalence.max_abs_diff < 0.1
    run, cells = _cells(f"onnx:{files['fixed']}", sizes=(1, 2))
    assert [c.status for c in cells] == ["ok", "error"]
    assert "fixes the batch size to 1" in cells[1].message
    with pytest.raises(InputError, match="cannot run under --runtime eager"):
        _cells(f"onnx:{files['dynamic']}", runtime="eager")


# ---- the study: identity, isolation, storage, resume ------------------------------------------------------------

def test_study_cells_are_the_very_specs_bench_measures():
    """A study's cell identity is the digest of the CellSpec api.bench measures (nothing hand-picked)."""
    from dnnbench.core.measurements import BenchConfig

    cfg = runner.StudyConfig(batch_sizes=[1], target_ci=0.02, max_time_per_cell=10.0, sensors="none")
    cells, _ = runner.plan_cells(["resnet18"], cfg, ["time", "memory"], 2, "fp0")
    plan = api.plan_bench("torchvision:resnet18", BenchConfig(batch_sizes=[1], threads=2, sensors="none",
                                                              runtime="eager"))
    assert [c.cell_id for c in cells] == [s.cell_id for s in plan.specs]
    assert cells[0].config["spec"].input_shape == ((1, 3, 224, 224),) and cells[0].config["spec"].timing.processes == 5
    both, _ = runner.plan_cells(["resnet18"], replace(cfg, runtimes="eager,onnxruntime"), ["time", "memory"], 2, "fp0")
    assert both[0].cell_id == cells[0].cell_id and both[1].cell_id != cells[0].cell_id
    assert both[1].config["runtime"] == "onnxruntime"



def test_study_measures_each_configuration_in_isolated_workers_and_resumes(tmp_path):
    store = f"sqlite:///{tmp_path / 's.db'}"
    kw = dict(batch_sizes=[2], metrics="time,memory", store=store, threads=1, max_time_per_cell=0.5,
              runtimes="onnxruntime", precisions="fp32,int8-dynamic", sensors="none")
    s = runner.study([CNN], **kw)
    assert (s.measured, s.failed) == (2, 0)
    df = runner.load_results(store).set_index(["runtime", "precision"])
    assert sorted(df.index) == [("onnxruntime", "fp32"), ("onnxruntime", "int8-dynamic")]
    ref = _reference_logits(CNN, 2, 0)  # the study's cells use the default seed
    for conf in [("onnxruntime", "fp32"), ("onnxruntime", "int8-dynamic")]:
        row = df.loc[conf]
        diff, scale = row["equivalence_max_abs_diff"], row["equivalence_reference_max_abs"]
        assert scale == pytest.approx(float(ref.abs().max()))  # eager fp32 on the worker's input
        assert 0 < diff <= REL_TOL[conf[1]] * scale and row["equivalence_rows"] == 2
        _assert_agreement_bound(row["equivalence_top1_agreement"], 2, diff, _margins(ref))
        assert row["rss_above_baseline_bytes"] > 0 and row["prepare_s"] > 0 and row["latency_median_s"] > 0
        # the preparation's peak (export with the torch model alive) is kept apart from the running peak
        assert row["prepare_peak_rss_bytes"] > 0 and row["peak_rss_bytes"] > 0
    assert df.loc[("onnxruntime", "fp32"), "equivalence_max_abs_diff"] < 1e-5
    assert df.loc[("onnxruntime", "fp32"), "equivalence_top1_agreement"] == 1.0
    again = runner.study([CNN], **kw)
    assert (again.measured, again.skipped_existing) == (0, 2)


# ---- the report ----------------------------------------------------------------------------------------------

def test_report_sets_runtimes_and_precisions_side_by_side(tmp_path):
    from dnnbench.report import build
    from dnnbench.store import open_store
    from tests import synthetic_results as S

    rows = S.rows(power=False, batches=(1, 4), models=["alpha", "beta"], profile_only=False)
    extra = []
    for r in rows:
        if r.metric_group == "profile":
            continue
        for runtime, precision, speed, diff in (("onnxruntime", "fp32", 2.0, 1e-6), ("eager", "int8", 1.25, 0.02)):
            m = dict(r.metrics)
            m["latency_per_item_s"] /= speed
            m["latency_median_s"] /= speed
            m.update(equivalence_max_abs_diff=diff, equivalence_top1_agreement=1.0, prepare_s=0.4, cold_start_s=0.05)
            extra.append(replace(r, cell_id=f"{r.cell_id}-{runtime}-{precision}", runtime=runtime, precision=precision,
                                 metrics=m))
    extra.append(replace(rows[-1], cell_id="x-error", runtime="compile", precision="fp32", status="error",
                         message="exporting failed: no C++ compiler", metrics={}))
    url = S.write(f"sqlite:///{tmp_path / 'r.db'}", rows + extra)
    with open_store(url) as st:
        res = build(st.frame(), st.environments(), tmp_path / "out")
    fig = next(f for f in res.figures if f.key == "runtimes")
    assert fig.no_data is None
    # batch 1, one bar per model and measured configuration (the failed compile cell has none), in ms
    t1 = {m: 1e3 * S.time_per_image(m, 1) for m in ("alpha", "beta")}
    assert {k: dict(v) for k, v in fig.plotted.bars.items()} == {
        "eager fp32": pytest.approx(t1), "onnxruntime fp32": pytest.approx({m: t / 2 for m, t in t1.items()}),
        "eager int8": pytest.approx({m: t / 1.25 for m, t in t1.items()})}
    assert sorted(t for t, _, _ in fig.plotted.labels) == ["1.2x"] * 2 + ["2x"] * 2  # speed-ups, not eager fp32's
    html = res.path.read_text(encoding="utf-8")
    section = html[html.index('id="runtimes"'):html.index('id="environment"')]
    for head in ("eager fp32", "eager int8", "compile fp32", "onnxruntime fp32"):
        assert f">{head}</th>" in section
    assert "(2x)" in section and "(1.2x)" in section  # eager fp32's time over this one's
    assert "max |diff| 1e-06, top-1 100 %" in section and "reference" in section
    assert "error: exporting failed: no C++ compiler" in section
    assert section.count("<tr>") == 2 + 4  # two header rows, then a row per model and batch size
