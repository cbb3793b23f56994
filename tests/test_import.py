"""`dnnbench import`: another device's own measurements into the store (issue 16, item 5).

Fixtures are written here from the real formats:
- ExecuTorch executor_runner (pytorch/executorch, examples/portable/executor_runner/executor_runner.cpp):
  ``ET_LOG(Info, "Iteration %u of %u: %f ms", ...)`` per execution, then ``"Model executed successfully %u
  time(s) in %f ms."``; ET_LOG's default prefix is ``I 00:00:00.052110 executorch:FILE:LINE] ``.
- TFLite benchmark_model (tensorflow/lite/tools/benchmark/benchmark_model.cc, Stat::OutputToStream in
  tensorflow/core/util/stats_calculator.h): ``count=.. first=.. curr=.. min=.. max=.. avg=.. std=..`` in us
  (newer builds add ``p5= median= p95=``), warm-up first, then ``Inference timings in us: Init: ..,
  First inference: .., Warmup (avg): .., Inference (avg): ..``. The TFLite log below is a real run's output
  (an Android aarch64 benchmark_model, numbers as printed).
"""

from __future__ import annotations

import json
import random
import statistics

import pytest
from click.testing import CliRunner

from dnnbench.cli import cli, main
from dnnbench.store import open_store
from tests import synthetic_results as S

TFLITE_LOG = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Loaded model ./models/tiny_float32.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: The input model file size (MB): 24.6229
INFO: Initialized session in 119.515ms.
INFO: Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=9 first=87112 curr=51629 min=51629 max=87112 avg=58147.4 std=11478 p5=51629 median=51962 p95=87112

INFO: Running benchmark for at least 1000 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716 p5=49620 median=51891 p95=68628

INFO: Inference timings in us: Init: 119515, First inference: 87112, Warmup (avg): 58147.4, Inference (avg): 63743.2
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual \
memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=55.4961 overall=55.4961
"""

# an older benchmark_model: no percentiles, "Average inference timings" (tflite performance docs)
TFLITE_OLD_LOG = """\
Initialized session in 0.896ms
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=215 first=12231 curr=2106 min=2065 max=12231 avg=2331.42 std=746

Running benchmark for at least 100 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=459 first=2143 curr=2101 min=2056 max=2656 avg=2177.1 std=124

Average inference timings in us: Warmup: 2331.42, Init: 896, no stats: 2177.1
"""

ET_ITERS_MS = [20.7, 12.1, 12.07, 12.09, 12.11, 12.3, 12.05]


def et_log(iters_ms=ET_ITERS_MS) -> str:
    lines = ["I 00:00:00.000512 executorch:executor_runner.cpp:182] Model file mv2.pte is loaded.",
             "I 00:00:00.000530 executorch:executor_runner.cpp:191] Using method forward",
             "I 00:00:00.031402 executorch:executor_runner.cpp:292] Model loaded in 30.871000 ms."]
    lines += [f"I 00:00:00.0{52 + i}110 executorch:executor_runner.cpp:380] Iteration {i + 1} of {len(iters_ms)}: "
              f"{ms:f} ms" for i, ms in enumerate(iters_ms)]
    lines.append(f"I 00:00:00.100540 executorch:executor_runner.cpp:388] Model executed successfully "
                 f"{len(iters_ms)} time(s) in {sum(iters_ms):f} ms.")
    lines.append("I 00:00:00.100561 executorch:executor_runner.cpp:397] 1 outputs: ")
    return "\n".join(lines) + "\n"


def phone_csv(tmp_path, models=("resnet18", "mobilenet_v2"), n=25, seed=0):
    rng = random.Random(seed)
    rows = {m: [round(0.02 + 0.01 * i + rng.random() * 0.004, 6) for _ in range(n)] for i, m in enumerate(models)}
    text = "model,batch_size,runtime,precision,latency_s\n" + "".join(
        f"{m},1,xnnpack,fp32,{x}\n" for m, xs in rows.items() for x in xs)
    p = tmp_path / "phone.csv"
    p.write_text(text)
    return p, rows


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def records(db):
    with open_store(str(db), readonly=True) as st:
        return st.records()


def count(db) -> int:
    if not db.exists():
        return 0
    with open_store(str(db)) as st:
        return st.count()


def test_csv_import_statistics_equal_a_direct_computation(tmp_path):
    from dnnbench.core.view import metrics

    f, rows = phone_csv(tmp_path)
    db = tmp_path / "s.db"
    r = run("import", f, "--device-name", "Pixel 8", "--store", db, "--threads", 4)
    assert r.exit_code == 0, r.output
    recs = {rec.model: rec for rec in records(db)}
    assert set(recs) == {"torchvision:resnet18", "torchvision:mobilenet_v2"}
    for name, xs in rows.items():
        rec = recs[f"torchvision:{name}"]
        assert rec.spec["provenance"] == "imported" and rec.spec["device_name"] == "Pixel 8"
        assert rec.spec["machine"].startswith("imported:") and rec.spec["threads"] == 4
        assert rec.samples["latency_s"] == xs
        m = metrics(rec)
        assert m.get("latency_median_s") == pytest.approx(statistics.median(xs), rel=1e-12)
        assert m.get("latency_mean_s") == pytest.approx(statistics.fmean(xs), rel=1e-12)
        assert m.get("throughput_items_per_s") == pytest.approx(1 / statistics.median(xs), rel=1e-12)
        assert m.get("latency_samples") == len(xs)
        assert m.get("latency_ci_low_s") < m.get("latency_median_s") < m.get("latency_ci_high_s")
        for fig in ("peak_rss_bytes", "power_w", "cold_start_s"):
            assert fig not in m.values
            assert m.notes[fig] == "unavailable: imported from a CSV file: the device's tool does not report it"
        assert "fraction_of_peak" not in m.values and "imported device 'Pixel 8'" in m.notes["fraction_of_peak"]
    # a different device is a different setup: same rows, other cell ids
    r = run("import", f, "--device-name", "Galaxy S24", "--store", db)
    assert r.exit_code == 0 and count(db) == 4


def test_reimport_is_idempotent_and_replace_restores(tmp_path):
    f, _ = phone_csv(tmp_path)
    db = tmp_path / "s.db"
    assert run("import", f, "--device-name", "Pixel 8", "--store", db).exit_code == 0
    ids = sorted(r.cell_id for r in records(db))
    again = run("import", f, "--device-name", "Pixel 8", "--store", db)
    assert again.exit_code == 0 and "2 stored already" in again.output
    assert sorted(r.cell_id for r in records(db)) == ids
    assert run("import", f, "--device-name", "Pixel 8", "--store", db, "--replace").exit_code == 0
    assert sorted(r.cell_id for r in records(db)) == ids and count(db) == 2


HEADER = "model,batch_size,runtime,precision,latency_s\n"
BAD = {
    "non_numeric": (HEADER + "resnet18,1,xnnpack,fp32,0.02\nresnet18,1,xnnpack,fp32,fast\n",
                    "line 3: latency_s 'fast'"),
    "negative": (HEADER + "resnet18,1,xnnpack,fp32,0.02\nresnet18,1,xnnpack,fp32,-0.01\n", "line 3: latency_s '-0.01'"),
    "missing_column": ("model,batch_size,runtime,latency_s\nresnet18,1,xnnpack,0.02\n", "lacks column precision"),
    "short_row": (HEADER + "resnet18,1,xnnpack,0.02\n", "line 2: 4 fields"),
    "bad_batch": (HEADER + "resnet18,0,xnnpack,fp32,0.02\n", "line 2: batch_size 0"),
    "empty": ("", "the file is empty"),
    "header_only": (HEADER, "no rows"),
    "unknown_format": ("hello\nworld\n", "unknown format"),
    "truncated_executorch": (et_log().replace("Iteration 4 of 7", "Iteration 5 of 7"), "follows iteration 3"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_file_is_one_line_exit_2_and_stores_nothing(tmp_path, case, capsys):
    text, expected = BAD[case]
    good, _ = phone_csv(tmp_path)
    db = tmp_path / "s.db"
    assert run("import", good, "--device-name", "Pixel 8", "--store", db).exit_code == 0
    before = count(db)
    bad = tmp_path / "bad.txt"
    bad.write_text(text)
    extra = ["--model", "mv2", "--batch-size", "1", "--runtime", "xnnpack", "--precision", "fp32"] \
        if case == "truncated_executorch" else []
    with pytest.raises(SystemExit) as e:
        main(["import", str(bad), "--device-name", "Pixel 8", "--store", str(db), *extra])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err and "Fix:" in err
    assert count(db) == before


def test_a_bad_row_after_good_cells_stores_none_of_them(tmp_path, capsys):
    db = tmp_path / "s.db"
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "".join(f"resnet18,1,xnnpack,fp32,0.0{i + 1}\n" for i in range(9))
                   + "mobilenet_v2,1,xnnpack,fp32,0.01\nmobilenet_v2,1,xnnpack,fp32,nan\n")
    with pytest.raises(SystemExit) as e:
        main(["import", str(bad), "--device-name", "Pixel 8", "--store", str(db)])
    assert e.value.code == 2 and "line 12" in capsys.readouterr().err
    assert count(db) == 0


def test_unreadable_path_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["import", str(tmp_path / "nope.csv"), "--device-name", "Pixel 8", "--store", str(tmp_path / "s.db")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "no such file" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.db").exists()


def test_executorch_per_iteration_samples_with_the_cold_start_apart(tmp_path):
    from dnnbench.core.view import metrics

    f = tmp_path / "et.log"
    f.write_text(et_log())
    db = tmp_path / "s.db"
    r = run("import", f, "--device-name", "Pixel 8", "--store", db, "--model", "mobilenet_v2", "--batch-size", 1,
            "--runtime", "executorch-xnnpack", "--precision", "fp32")
    assert r.exit_code == 0, r.output
    (rec,) = records(db)
    assert rec.spec["source_format"] == "executorch" and rec.model == "torchvision:mobilenet_v2"
    assert rec.samples["latency_s"] == pytest.approx([x / 1e3 for x in ET_ITERS_MS[1:]])
    m = metrics(rec)
    assert m.get("cold_start_s") == pytest.approx(ET_ITERS_MS[0] / 1e3)
    assert m.get("latency_median_s") == pytest.approx(statistics.median(ET_ITERS_MS[1:]) / 1e3)
    assert rec.result["imported"]["load_s"] == pytest.approx(0.030871)


def test_executorch_without_options_names_what_is_missing(tmp_path, capsys):
    f = tmp_path / "et.log"
    f.write_text(et_log())
    with pytest.raises(SystemExit) as e:
        main(["import", str(f), "--device-name", "Pixel 8", "--store", str(tmp_path / "s.db"), "--model", "mv2"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--batch-size VALUE --runtime VALUE --precision VALUE" in err


def test_old_executorch_total_only_is_a_mean_without_samples(tmp_path):
    from dnnbench.core.view import metrics

    f = tmp_path / "et.log"
    f.write_text("I 00:00:01.000 executorch:executor_runner.cpp:171] Model executed successfully 10 time(s) in "
                 "125.000000 ms.\n")
    db = tmp_path / "s.db"
    assert run("import", f, "--device-name", "Pixel 8", "--store", db, "--model", "mv2", "--batch-size", 1,
               "--runtime", "executorch", "--precision", "fp32").exit_code == 0
    (rec,) = records(db)
    m = metrics(rec)
    assert rec.samples == {} and m.get("latency_mean_s") == pytest.approx(0.0125)
    assert "latency_median_s" not in m.values and "printed only the total of 10" in m.notes["latency_median_s"]
    assert "throughput_items_per_s" not in m.values


@pytest.mark.parametrize("log,median,mean,n", [(TFLITE_LOG, 0.051891, 0.0637432, 1000),
                                               (TFLITE_OLD_LOG, None, 0.0021771, 459)])
def test_tflite_aggregates_as_printed_and_no_invented_samples(tmp_path, log, median, mean, n):
    from dnnbench.core.view import metrics

    f = tmp_path / "tfl.log"
    f.write_text(log)
    db = tmp_path / "s.db"
    r = run("import", f, "--device-name", "Pixel 8", "--store", db, "--model", "mobilenet_v2", "--batch-size", 1,
            "--runtime", "tflite-xnnpack", "--precision", "fp32")
    assert r.exit_code == 0, r.output
    (rec,) = records(db)
    m = metrics(rec)
    assert rec.samples == {}  # benchmark_model prints no per-iteration time: none is invented
    assert m.get("latency_mean_s") == pytest.approx(mean)  # the timed run's, not the warm-up's
    assert rec.result["reported_latency"]["count"] == n
    assert "never a per-iteration time" in m.notes["latency_ci_low_s"] and "latency_ci_low_s" not in m.values
    assert "as printed by TFLite benchmark_model" in m.notes["latency_mean_s"]
    if median is None:
        assert "latency_median_s" not in m.values
    else:
        assert m.get("latency_median_s") == pytest.approx(median)
        assert m.get("throughput_items_per_s") == pytest.approx(1 / median)
        assert m.get("cold_start_s") == pytest.approx(0.087112)
        assert "APPROXIMATE memory footprint" in m.notes["peak_rss_bytes"]


def test_export_shows_provenance_and_report_and_pick_run_beside_this_machine(tmp_path):
    from dnnbench.analysis.tables import setups

    db = tmp_path / "both.db"
    S.write(str(db), S.rows())
    f, rows = phone_csv(tmp_path, models=("torchvision:alpha", "torchvision:beta", "torchvision:gamma"))  # as planted
    assert run("import", f, "--device-name", "Pixel 8", "--store", db, "--threads", 4).exit_code == 0
    out = tmp_path / "export.json"
    r = run("export", "--store", db, "--format", "json", "--output", out)
    assert r.exit_code == 0, r.output
    table = json.loads(out.read_text())
    prov = {(row["model_ref"], row["provenance"]) for row in table if row["metric_group"] != "profile"}
    assert ("torchvision:alpha", "imported") in prov and ("torchvision:alpha", "measured") in prov
    imported = [row for row in table if row["provenance"] == "imported"]
    assert {row["cpu_model"] for row in imported} == {"Pixel 8"}
    assert {row["latency_median_s"] for row in imported} == {statistics.median(x) for x in rows.values()}
    with open_store(str(db), readonly=True) as st:
        labels = [s.label for s in setups(st.frame())]
    assert "cpu (Pixel 8, 4 threads), xnnpack, fp32" in labels
    assert run("pick", "--store", db).exit_code == 0
    rep = run("report", "--store", db, "--out", tmp_path / "rep")
    assert rep.exit_code == 0, rep.output
    assert "Pixel 8" in (tmp_path / "rep" / "report.html").read_text()


def test_put_many_is_all_or_nothing(tmp_path):
    from dnnbench.store.imported import Options, import_records

    f, _ = phone_csv(tmp_path)
    _, recs = import_records(str(f), Options(device_name="Pixel 8"))
    broken = recs[1].with_(spec={**recs[1].spec, "unstorable": object()})  # the JSON column refuses it
    with open_store(str(tmp_path / "s.db")) as st:
        with pytest.raises(Exception):
            st.put_many([recs[0], broken])
        assert st.count() == 0  # the first record was rolled back with the second
        assert st.put_many(recs) == 2 and st.put_many(recs) == 0 and st.count() == 2


def test_a_bare_name_becomes_a_reference_only_when_it_names_a_model(tmp_path):
    from dnnbench.api import _known_bare_name
    from dnnbench.store.imported import _model

    assert _model("mobilenet_v2", _known_bare_name) == "torchvision:mobilenet_v2"  # meets this machine's cells
    assert _model("mv2", _known_bare_name) == "mv2"  # a name of the device's own: kept as written
    assert _model("timm:resnet50.a1_in1k", _known_bare_name) == "timm:resnet50.a1_in1k"
