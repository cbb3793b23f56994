"""Every user mistake is one line and exit 2, and nothing bogus is measured or stored (issue 19)."""

import errno
import json
import os
import textwrap
from urllib.error import URLError

import pytest
import torch
from click.testing import CliRunner

from dnnbench import api
from dnnbench.cli import main
from dnnbench.core.errors import DnnbenchError, InputError, ModelBuildError, UnavailableError

MODELS = """
import torch
from torch import nn

def good():  # hand-computed below: per item 7x5 + 5x3 MACs
    return nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3)), torch.randn(2, 7)

def wrong_input():  # cannot run: the example has 7 features, the layer takes 10
    return nn.Linear(10, 4), torch.randn(2, 7)

def wrong_norm():
    return nn.LayerNorm(10), torch.randn(2, 7)

def wrong_channels():
    return nn.BatchNorm2d(16), torch.randn(2, 8, 3, 3)

class _NeedsRealTensors(nn.Module):  # nonzero cannot run on meta: counted on real tensors, which do not fit
    def forward(self, x):
        keep = x.nonzero().shape[0]
        return torch.empty(1 << 45) if keep >= 0 else x  # 128 TiB

def too_big_for_memory():
    return _NeedsRealTensors(), torch.randn(2, 3)
"""


def run(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    """``dnnbench ARGS`` in this process, through the entry point that turns errors into one line."""
    runner = CliRunner()
    with runner.isolation(env=env) as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue().decode(), err.getvalue().decode()


def one_line_error(result, *fragments) -> str:
    code, out, err = result
    assert code == 2, (code, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("dnnbench: error: ") and "Traceback" not in out + err
    assert "internal error" not in line
    for f in fragments:
        assert f in line, line
    return line


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(textwrap.dedent(MODELS))
    return lambda name: f"python:{path}:{name}"


@pytest.fixture
def afile(tmp_path):
    """A regular file: a path under it cannot be created, even by root (NotADirectoryError)."""
    f = tmp_path / "afile"
    f.write_text("x")
    return f


# ---- item 8: study refuses what bench refuses, before anything is stored ------------------------------

@pytest.mark.parametrize("extra, fragments", [
    (["nosuchmodel"], ["unknown torchvision model 'nosuchmodel'"]),
    (["BROKEN"], ["importing", "SyntaxError"]),
    (["GOOD", "--input-size", "abc"], ["input size 'abc' is malformed"]),
    (["GOOD", "--target-ci", "0"], ["--target-ci"]),
    (["GOOD", "--max-time-per-cell", "0"], ["--max-time-per-cell"]),
    (["GOOD", "--threads", "100000"], ["--threads 100000", "logical core"]),
])
def test_study_mistakes_are_one_line_and_store_nothing(tmp_path, models, extra, fragments):
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\ndef build(:\n    pass\n")
    words = [{"GOOD": models("good"), "BROKEN": f"python:{broken}:build"}.get(w, w) for w in extra]
    db = tmp_path / "r.db"
    one_line_error(run("study", *words, "--metrics", "profile", "--store", str(db)), *fragments)
    assert not db.exists()


@pytest.mark.parametrize("kwargs", [
    {"models": ["nosuchmodel"]}, {"input_size": "abc"}, {"target_ci": 0}, {"max_time_per_cell": 0},
])
def test_study_api_refuses_before_storing(tmp_path, models, kwargs):
    from dnnbench.runner import study

    db = tmp_path / "r.db"
    args = {"models": [models("good")], "metrics": "profile,time", "store": str(db), "batch_sizes": [1],
            "in_process": True, **kwargs}
    with pytest.raises(DnnbenchError):
        study(**args)
    assert not db.exists()  # before the check, each of these stored "error" rows that pick offered as models


def test_unavailable_set_members_are_not_mistakes(monkeypatch):
    from dnnbench.sources import sets

    monkeypatch.setattr(sets.timm_models, "available", lambda: False)
    entries = api.expand_models(["paper"])
    assert any(e.ref is None and "timm" in (e.unavailable or "") for e in entries)
    api.check_study_inputs(["paper"])  # no error: the study lists them as unavailable


def test_profile_of_only_unknown_models_fails(models):
    line = one_line_error(run("profile", "nosuchA", "nosuchB"), "none of the 2 models could be profiled")
    assert "'nosuchA'" in line and "'nosuchB'" in line
    code, out, err = run("profile", "nosuchA", models("good"), "--format", "json")  # one works: exit 0, error noted
    assert code == 0, err
    rows = {r["label"]: r for r in json.loads(out)}
    assert "unknown torchvision model 'nosuchA'" in rows["nosuchA"]["error"]
    assert [r["profile"] is not None for r in rows.values()] == [False, True]


# ---- item 9: a model that cannot run is not counted ----------------------------------------------------

@pytest.mark.parametrize("name, fragment", [
    ("wrong_input", "mat1 and mat2 shapes cannot be multiplied (1x7 and 10x4)"),
    ("wrong_norm", "normalized_shape=[10]"),
    ("wrong_channels", "should contain 8 elements not 16"),
])
def test_profile_rejects_input_the_model_rejects(models, name, fragment):
    line = one_line_error(run("profile", models(name)), "rejected input of shape [1, ", fragment)
    assert "example input" in line  # a factory's fix names the factory's example input
    with pytest.raises(InputError, match="rejected input"):
        api.profile(models(name), batch_size=2)


def test_real_tensors_that_do_not_fit_blame_the_size_not_the_model(models):
    line = one_line_error(run("profile", models("too_big_for_memory")), "needs more memory than this machine has")
    assert "smaller --input-size or --batch-size" in line and "model's code" not in line


def test_profile_of_an_accepted_input_counts_by_hand(models):
    p = api.profile(models("good"), batch_size=2)
    assert p.mode == "meta"
    assert p.macs == 2 * (7 * 5 + 5 * 3) and p.flops == 2 * p.macs
    assert p.input_shape == [[2, 7]]


# ---- item 10: threads bounded by the machine -----------------------------------------------------------

def test_threads_beyond_the_machine_are_refused(models):
    from dnnbench.core.measurements import check_bench_options

    cores = len(os.sched_getaffinity(0))
    check_bench_options(4 * cores)  # oversubscription studies stay possible
    with pytest.raises(InputError, match=f"{cores} logical core"):
        check_bench_options(4 * cores + 1)
    one_line_error(run("bench", models("good"), "--threads", "100000", "--in-process", "--batch-sizes", "1"),
                   "--threads 100000", f"{cores} logical core")


# ---- item 4: an unwritable machine cache keeps the measurement -------------------------------------------

def test_machine_with_unwritable_cache_prints_the_result_and_why(monkeypatch, afile):
    from dnnbench.host import machine

    monkeypatch.setattr(machine, "CPU_GEMMS", (32,))
    monkeypatch.setattr(machine, "CPU_CONVS", (("conv tiny", 1, 2, 2, 3, 6, 1),))
    monkeypatch.setattr(machine, "CPU_COPY_BYTES", 1 << 16)
    monkeypatch.setattr(machine, "PROBE_BUDGET_S", 0.001)
    monkeypatch.setenv("DNNBENCH_CACHE_DIR", str(afile / "x"))
    code, out, err = run("machine", "--threads", "1")
    assert code == 0, err
    assert "peak fp32:" in out and "GFLOP/s" in out
    assert "not cached" in out and "NotADirectoryError" in out and "DNNBENCH_CACHE_DIR" in out
    assert "Traceback" not in out + err
    peak = api.machine("cpu", 1)[0]
    assert peak.peak_flops_per_s > 0 and "not cached" in peak.unavailable["cache"]


# ---- item 7: weights, meter logs and output paths ------------------------------------------------------

def test_download_without_network_is_one_line(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise URLError(OSError(errno.ENETUNREACH, "Network is unreachable"))

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "urlopen", offline)
    with pytest.raises(UnavailableError) as info:
        api.load_model("alexnet", weights="DEFAULT", download_weights=True)
    line = info.value.one_line()
    assert line.startswith("could not download weights for AlexNet_Weights.IMAGENET1K_V1: no network")
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in line and "--download-weights" in line
    data = tmp_path / "val"
    (data / "n01440764").mkdir(parents=True)
    one_line_error(run("accuracy", "alexnet", "--data", str(data), "--download-weights"),
                   "could not download weights", "no network")


@pytest.mark.parametrize("content, fragment", [
    (os.urandom(3000), "it is not a checkpoint"),
    (b"", "the file is empty"),
    (b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01x\x94K\x01s.", "cannot read it"),
])
def test_weights_file_that_is_not_a_checkpoint(tmp_path, models, content, fragment):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(content)
    with pytest.raises(ModelBuildError) as info:
        api.load_model(models("good"), weights=str(bad))
    line = info.value.one_line()
    assert fragment in line
    # the whole message, not torch's paragraph cut mid-sentence
    assert line.endswith("Fix: give a state_dict saved with torch.save(model.state_dict(), path).")
    assert "Please file an issue" not in line and "\n" not in line


def test_binary_meter_log(tmp_path, models):
    log = tmp_path / "meter.csv"
    log.write_bytes(bytes(range(256)) * 8)
    code, out, err = run("sensors", f"meter:{log}")
    assert code == 0, err  # sensors reports; it does not fail
    assert "unavailable" in out and "not a text file" in out and "Traceback" not in out + err
    one_line_error(run("bench", models("good"), "--sensors", f"meter:{log}", "--in-process", "--batch-sizes", "1"),
                   "not a text file")


def test_a_garbled_line_in_a_meter_log_is_skipped_not_fatal(tmp_path):
    from dnnbench.power.meter import parse_meter_log

    log = tmp_path / "meter.csv"
    log.write_bytes(b"time,watts\n1,2.0\n2,3.0\n\xff\xfe\x00 noise\n3,4.0\n")
    parsed = parse_meter_log(str(log))
    assert parsed.times == [1.0, 2.0, 3.0] and [n for n, _ in parsed.skipped] == [4]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from dnnbench.runner import study

    d = tmp_path_factory.mktemp("store")
    (d / "m.py").write_text(textwrap.dedent(MODELS))
    db = d / "r.db"
    study([f"python:{d / 'm.py'}:good"], batch_sizes=[1], metrics="profile", store=str(db))
    return str(db)


def _bad_outputs(tmp_path, afile):
    (tmp_path / "adir").mkdir()
    paths = [(afile / "x.csv", "not a folder"), (tmp_path / "missing" / "x.csv", "does not exist"),
             (tmp_path / "adir", "is a directory")]
    if os.path.exists("/dev/full"):
        paths.append(("/dev/full", "no space"))
    return paths


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_to_a_path_that_cannot_be_written(store, tmp_path, afile, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    for path, fragment in _bad_outputs(tmp_path, afile):
        one_line_error(run("export", "--store", store, "--format", fmt, "--output", str(path)),
                       f"cannot write {path}", fragment, "--output")
    assert not (tmp_path / "missing").exists()
    good = tmp_path / f"ok.{fmt}"
    code, _, err = run("export", "--store", store, "--format", fmt, "--output", str(good))
    assert code == 0 and good.stat().st_size > 0, err


def test_report_to_a_path_that_cannot_be_written(store, tmp_path, afile):
    one_line_error(run("report", "--store", store, "--out", str(afile / "x")), "not a folder", "--out")
    one_line_error(run("report", "--store", store, "--out", str(afile)), "it is a file, not a folder")


def test_write_output_full_disk_names_the_cause(tmp_path, monkeypatch):
    target = tmp_path / "t.csv"

    def full(fh):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(InputError, match="no space is left on the device"):
        api.write_output(str(target), full)
    assert not target.exists()  # no half-written file passes for the table


# ---- item 13: an impossible --device is refused, not answered with a study hint ----------------------

@pytest.mark.parametrize("command", ["pick", "report"])
def test_unknown_device_on_pick_and_report(store, command):
    line = one_line_error(run(command, "--store", store, "--device", "tpu"), "unknown device 'tpu'")
    assert "dnnbench study" not in line


def test_input_size_resizes_every_image_of_a_pair_and_every_frame_of_a_clip_and_refuses_tokens():
    from dnnbench.core.specs import InputSpec, TensorSpec

    pair = InputSpec((TensorSpec((3, 512, 512)), TensorSpec((3, 512, 512))))
    assert pair.with_image_size(128, 96).shapes(2) == [[2, 3, 128, 96], [2, 3, 128, 96]]
    clip = InputSpec((TensorSpec((3, 16, 112, 112)),))
    assert clip.with_image_size(64, 64).shapes(1) == [[1, 3, 16, 64, 64]]
    images = InputSpec((TensorSpec((3, 800, 800)),), as_list=True)
    assert images.with_image_size(320, 320).as_list
    tokens = InputSpec((TensorSpec((128,), torch.int64, 1000),))
    with pytest.raises(InputError, match="inputs are images or clips"):
        tokens.with_image_size(224, 224)
