"""Accuracy per (runtime, precision): a small model trained here, images generated here, int8 against fp32 on
the same images, and the paired statistics (McNemar's exact test, Newcombe's interval, agreement) checked against
a direct computation."""

from __future__ import annotations

import json
import math
import sys
import textwrap
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

from dnnbench import api
from dnnbench.core.accuracy import (ConfigUnavailable, mcnemar_exact_p, paired_comparison, paired_difference_interval,
                                    wilson_interval)

PER_CLASS = 50
BATCH = 16  # 200 images: the last batch holds 8 and is padded

# A factory whose last linear layer sees one constant outlier feature: dynamic int8 quantizes that layer's input with
# one scale per batch, set by the outlier, so the informative features lose resolution and some predictions flip —
# in both directions (a real effect of per-tensor activation quantization, not a planted one).
NET = textwrap.dedent('''
    import numpy as np
    import torch
    from torch import nn
    from torchvision import transforms as T

    COLOURS = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200], [170, 170, 60]], dtype=np.float64)
    WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]
    OUTLIER = 300.0

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                          nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                                          nn.AdaptiveAvgPool2d(2), nn.Flatten())
            self.fc = nn.Linear(33, 4)

        def forward(self, x):
            f = self.features(x)
            return self.fc(torch.cat([f, torch.full_like(f[:, :1], OUTLIER)], 1))

    PREPROCESS = T.Compose([T.Resize((16, 16)), T.ToTensor()])

    def build():
        return Net()

    build.preprocess = PREPROCESS
    build.class_names = WNIDS

    def image(rng, label, t=0.0):
        """A 16x16 square of the class colour moved a fraction t towards the next class's, with pixel noise."""
        from PIL import Image
        c = (1 - t) * COLOURS[label] + t * COLOURS[(label + 1) % 4]
        px = c + rng.normal(0, 40, (16, 16, 3))
        return Image.fromarray(np.clip(px, 0, 255).astype(np.uint8))
''')


def _load(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("acc_configs_net", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("accconf")
    (root / "net.py").write_text(NET)
    net = _load(root / "net.py")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.stack([net.PREPROCESS(net.image(rng, i % 4)) for i in range(200)])
    y = torch.tensor([i % 4 for i in range(200)])
    model = net.Net()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    ckpt = root / "net.pt"
    torch.save(model.state_dict(), ckpt)
    rng = np.random.default_rng(5)
    val, samples = root / "val", []
    for label, wnid in enumerate(net.WNIDS):
        (val / wnid).mkdir(parents=True)
        for i in range(PER_CLASS):
            p = val / wnid / f"img_{i:03d}.png"
            net.image(rng, label, rng.uniform(0.0, 0.4)).save(p)
            samples.append((str(p), label))
    cal = root / "cal"  # calibration images, none of them evaluated
    cal.mkdir()
    for i in range(32):
        net.image(rng, i % 4, rng.uniform(0.0, 0.4)).save(cal / f"c_{i:03d}.png")
    samples.sort()
    return {"root": root, "net": net, "model": model, "ckpt": str(ckpt), "val": str(val), "cal": str(cal),
            "samples": samples, "factory": f"python:{root / 'net.py'}:build"}


def _batched_logits(module, xs: torch.Tensor, batch: int) -> torch.Tensor:
    """Logits in batches of ``batch``, the last one padded by repeating its last image (rows dropped after)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(xs), batch):
            chunk = xs[i:i + batch]
            n = len(chunk)
            if n < batch:
                chunk = torch.cat([chunk, chunk[-1:].expand(batch - n, *chunk.shape[1:])])
            out.append(module(chunk)[:n])
    return torch.cat(out)


def _newcombe_direct(a, b, c, d, z=1.959963984540054):
    """Newcombe's paired interval written out independently (Altman et al. 2000, ch. 6), for p_cfg - p_ref."""
    n = a + b + c + d

    def wilson(x):
        p = x / n
        centre, half = (2 * n * p + z * z) / (2 * (n + z * z)), z * math.sqrt(z * z + 4 * n * p * (1 - p)) / (2 * (n + z * z))
        return centre - half, centre + half

    p1, p2 = (a + b) / n, (a + c) / n  # reference, configuration
    l1, u1 = wilson(a + b)
    l2, u2 = wilson(a + c)
    num = a * d - b * c
    num = num - n / 2 if num > n / 2 else (num if num < 0 else 0)
    den = math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    phi = num / den if den else 0.0
    dlt = p2 - p1
    return (dlt - math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2),
            dlt + math.sqrt((u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))


def _check_paired(paired, ref_hits, cfg_hits, agree):
    """Every paired figure equals its direct computation from the per-image samples."""
    stats = pytest.importorskip("scipy.stats")
    ref_hits, cfg_hits = np.asarray(ref_hits, bool), np.asarray(cfg_hits, bool)
    n = len(ref_hits)
    a, b = int((ref_hits & cfg_hits).sum()), int((ref_hits & ~cfg_hits).sum())
    c, d = int((~ref_hits & cfg_hits).sum()), int((~ref_hits & ~cfg_hits).sum())
    assert (paired.n, paired.b, paired.c, paired.both_correct, paired.both_wrong) == (n, b, c, a, d)
    assert paired.p_value == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0, rel=1e-12)
    assert paired.delta_top1_points == pytest.approx(100 * (cfg_hits.mean() - ref_hits.mean()))
    lo, hi = _newcombe_direct(a, b, c, d)
    assert (paired.delta_ci_low_points, paired.delta_ci_high_points) == pytest.approx((100 * lo, 100 * hi), abs=1e-9)
    assert paired.delta_ci_low_points <= paired.delta_top1_points <= paired.delta_ci_high_points
    assert paired.agreement == pytest.approx(np.mean(agree)) and paired.agreement_count == int(np.sum(agree))


def test_paired_statistics_equal_a_direct_computation():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for n, flip in ((50, 0.1), (400, 0.03), (2000, 0.2)):
        ref = rng.random(n) < 0.8
        cfg = np.where(rng.random(n) < flip, ~ref, ref)
        agree = (ref == cfg) | (rng.random(n) < 0.1)
        _check_paired(paired_comparison(ref, cfg, agree), ref, cfg, agree)
    for b, c in ((0, 0), (5, 0), (0, 7), (3, 14), (40, 41), (120, 60)):
        assert mcnemar_exact_p(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0)
    # no discordant pair: p = 1, and the interval still has width (from the Wilson intervals), centred on 0
    p = paired_comparison([True] * 30 + [False] * 10, [True] * 30 + [False] * 10, [True] * 40)
    assert (p.b, p.c, p.p_value, p.delta_top1_points) == (0, 0, 1.0, 0.0)
    assert p.delta_ci_low_points < 0 < p.delta_ci_high_points
    assert p.delta_ci_low_points == pytest.approx(-p.delta_ci_high_points)
    lo, hi = paired_difference_interval(14, 5, 0, 22)  # Altman et al. (2000) table 6.2, config = second measure
    assert lo < -5 / 41 < hi < 0


def test_int8_against_fp32_on_the_same_images(world):
    """eager int8-dynamic (and static int8, calibrated on a folder not evaluated) vs eager fp32, by hand and by dnnbench."""
    res = api.accuracy_configs(world["factory"], world["val"], "eager", "fp32,int8-dynamic,int8",
                               weights=world["ckpt"], batch_size=BATCH, workers=0, calibration=world["cal"])
    # eager fp32 (the reference) first, then the others in the order of dnnbench's precisions
    assert [(r.runtime, r.precision) for r in res] == [("eager", "fp32"), ("eager", "int8"), ("eager", "int8-dynamic")]
    ref, st, dyn = res
    n = len(world["samples"])
    net, model = world["net"], world["model"]
    from PIL import Image

    xs = torch.stack([net.PREPROCESS(Image.open(p).convert("RGB")) for p, _ in world["samples"]])
    labels = torch.tensor([y for _, y in world["samples"]])
    fp32 = _batched_logits(model, xs, BATCH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    int8 = _batched_logits(q, xs, BATCH)
    ref_hits = (fp32.argmax(1) == labels).numpy()
    dyn_hits = (int8.argmax(1) == labels).numpy()
    agree = (fp32.argmax(1) == int8.argmax(1)).numpy()
    assert ref.images == dyn.images == st.images == n
    assert ref.top1_hits == "".join("1" if h else "0" for h in ref_hits) and ref.paired is None
    assert dyn.top1_hits == "".join("1" if h else "0" for h in dyn_hits)
    assert dyn.top1_correct == int(dyn_hits.sum()) and dyn.top1 == pytest.approx(dyn_hits.mean())
    assert (dyn.top1_ci_low, dyn.top1_ci_high) == pytest.approx(wilson_interval(int(dyn_hits.sum()), n))
    # the outlier feature makes int8-dynamic flip predictions: discordant pairs exist, in both directions
    assert dyn.paired.b + dyn.paired.c >= 5 and dyn.paired.agreement < 1
    _check_paired(dyn.paired, ref_hits, dyn_hits, agree)
    assert dyn.paired.reference_top1_hits == ref.top1_hits
    assert 0.6 < ref.top1 < 1.0
    # static int8: its own samples, paired with the same reference; calibrated on the folder, which is said
    st_hits = np.array([h == "1" for h in st.top1_hits])
    assert st.paired.agree_hits and len(st.paired.agree_hits) == n
    _check_paired(st.paired, ref_hits, st_hits, [h == "1" for h in st.paired.agree_hits])
    assert world["cal"] in st.calibration
    assert dyn.forward_per_image_s > 0 and st.forward_per_image_s > 0
    # round trip through the record's dict
    from dnnbench.core.accuracy import Accuracy

    assert Accuracy.from_dict(json.loads(json.dumps(dyn.to_dict()))) == dyn


def test_static_int8_refuses_to_calibrate_on_evaluated_images(world):
    res = api.accuracy_configs(world["factory"], world["val"], "eager", "int8", weights=world["ckpt"],
                               batch_size=64, workers=0)
    assert isinstance(res[1], ConfigUnavailable)
    assert "not evaluated" in res[1].reason and "--calibration" in res[1].reason
    # with --limit, the images left out calibrate, and the record says which
    res = api.accuracy_configs(world["factory"], world["val"], "eager", "int8", weights=world["ckpt"],
                               batch_size=64, workers=0, limit=160)
    assert res[1].images == 160 and "left out of the evaluated subset" in res[1].calibration + " ".join(res[1].notes)


def test_cli_table_and_study_cells(world, cli, tmp_path):
    proc = cli("accuracy", world["factory"], "--data", world["val"], "--weights", world["ckpt"], "--batch-size",
               str(BATCH), "--workers", "0", "--precision", "int8-dynamic")
    assert proc.returncode == 0, proc.stderr
    assert "eager fp32 (reference)" in proc.stdout and "eager int8-dynamic" in proc.stdout
    assert "McNemar p" in proc.stdout
    from dnnbench import runner

    store = f"sqlite:///{tmp_path / 's.db'}"
    runner.study([world["factory"]], metrics="accuracy", data=world["val"], weights=world["ckpt"],
                 accuracy_batch_size=BATCH, precisions="fp32,int8-dynamic", store=store)
    df = runner.load_results(store)
    acc = df[df["metric_group"] == "accuracy"].set_index("precision")
    assert set(acc.index) == {"fp32", "int8-dynamic"} and (acc["status"] == "ok").all()
    assert acc.loc["int8-dynamic", "accuracy_drop_points"] == pytest.approx(
        100 * (acc.loc["fp32", "top1"] - acc.loc["int8-dynamic", "top1"]))
    # the eager fp32 cell is the one a study without --precision plans: same identity
    plain = runner.plan_cells([world["factory"]], runner.StudyConfig(batch_sizes=(1,), metrics="accuracy", data=world["val"]),
                              ["accuracy"], 2, "fp", {"data": world["val"], "labels": None, "weights": None,
                                                      "limit": None, "batch_size": BATCH})[0]
    both = runner.plan_cells([world["factory"]], runner.StudyConfig(batch_sizes=(1,), metrics="accuracy", data=world["val"],
                                                                    precisions="fp32,int8-dynamic"),
                             ["accuracy"], 2, "fp", {"data": world["val"], "labels": None, "weights": None,
                                                     "limit": None, "batch_size": BATCH})[0]
    assert [p.cell_id for p in plain] == [both[0].cell_id] and len(both) == 2
    # the model's top-1 stays eager fp32's; the report draws each configuration's top-1 against its time
    from dnnbench.analysis.tables import models_table

    assert models_table(df).iloc[0]["measured_top1"] == pytest.approx(acc.loc["fp32", "top1"])
    rep = api.report(store, str(tmp_path / "report"))
    fig = next(f for f in rep.figures if f.key == "accuracy_configs")
    assert fig.no_data is None
    tops = sorted(round(y, 6) for pts in fig.plotted.points.values() for _, y in pts)
    assert tops == sorted(round(100 * acc.loc[p, "top1"], 6) for p in ("fp32", "int8-dynamic"))
    assert any("int8-dynamic" in t for t in fig.plotted.labelled())


def test_pick_max_accuracy_drop(tmp_path):
    """A setup's configuration over the drop budget is rejected by how much; one without a measured drop is
    excluded with why; eager fp32 is the reference (no drop)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import synthetic_results as syn
    from dnnbench.analysis.pick import Budget, pick
    from dnnbench.analysis.tables import setups
    from dnnbench.store import CellRow, open_store

    t0 = datetime(2026, 1, 3, tzinfo=timezone.utc)
    cells = syn.rows(power=False, batches=(1,), profile_only=False)
    for name in ("alpha", "beta", "gamma"):
        r = syn._bench_row(name, 1, t0, power=False)
        cells.append(CellRow(**{**r.__dict__, "cell_id": f"q-{name}", "precision": "int8-dynamic"}))
    for name, drop in (("alpha", 0.5), ("beta", 3.0)):
        top1 = syn.MODELS[name][2] - drop / 100
        cells.append(CellRow(cell_id=f"a-{name}", fingerprint=syn.FP, environment=syn.ENV,
                             model_ref=f"torchvision:{name}", runtime="eager", device="cpu", precision="int8-dynamic",
                             batch_size=64, metric_group="accuracy", status="ok", started_at=t0, finished_at=t0,
                             metrics={"top1": top1, "accuracy_drop_points": drop, "images": 1000,
                                      "top1_delta_ci_low_points": -drop - 1, "top1_delta_ci_high_points": -drop + 1,
                                      "top1_mcnemar_p": 0.01}))
    url = syn.write(f"sqlite:///{tmp_path / 'p.db'}", cells)
    with open_store(url) as st:
        df = st.frame()
    int8 = next(s for s in setups(df) if s.precision == "int8-dynamic")
    res = pick(df, Budget(max_accuracy_drop=1.0, setup=int8.name))
    by = {c.model: c for c in res.candidates}
    assert by["alpha"].feasible and res.best.model == "alpha"
    assert by["alpha"].values["top1"].value == pytest.approx(0.695)  # its int8-dynamic top-1, not eager's
    (v,) = by["beta"].violations
    assert v.excess == pytest.approx(2.0)
    (u,) = by["gamma"].violations
    assert u.excess is None and "no accuracy of gamma under eager int8-dynamic" in u.value.note
    fp32 = next(s for s in setups(df) if s.precision == "fp32")
    res = pick(df, Budget(max_accuracy_drop=0, setup=fp32.name))
    assert all(c.feasible for c in res.candidates if c.status == "ok")
    from dnnbench.analysis.errors import ConstraintError

    with pytest.raises(ConstraintError, match="0 or more"):
        Budget(max_accuracy_drop=-1)
