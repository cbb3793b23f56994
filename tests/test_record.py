"""The one result record: bench JSON = stored record, identity = digest of the whole spec, the view, the
migration of a revision-0001 store, schema drift, and the numbers that used to be silently wrong."""

import json
import math
import os
from dataclasses import replace
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from dnnbench.core.energy import Energy
from dnnbench.core.measurements import BenchCell, CellSpec, Environment, Timing, TimingSpec
from dnnbench.core.record import CellRecord, CellWarning, RecordError
from dnnbench.core.view import metrics
from dnnbench.store import open_store
from tests.conftest import run_cli

MODELS = os.path.join(os.path.dirname(__file__), "bench_models.py")
TINY = f"python:{MODELS}:tiny"


def _env(**kw) -> Environment:
    base = dict(fingerprint="fp" * 8, cpu_model="Test CPU", physical_cores=2, logical_cores=2, arch="x86_64",
                os="Linux", python_version="3.11", torch_version="2.x", cuda_version=None, cudnn_version=None,
                gpu_name=None, gpu_driver=None, gpu_clocks_mhz=None, cpu_governor=None, cpu_freq_mhz=None,
                load_avg=[0.1, 0.1, 0.1], threads=2, tool_version="t", timestamp="2026-12-01T00:00:00+00:00",
                hostname="box")
    base.update(kw)
    return Environment(**base)


def _cell(device="cpu", energy=(), samples=(0.010, 0.011, 0.012, 0.010, 0.011, 0.010), **spec_kw) -> BenchCell:
    spec = CellSpec("torchvision:resnet18", 2, device, 2, TimingSpec(), sensors="auto", machine="fp" * 8,
                    input_shape=((2, 3, 224, 224),), **spec_kw)
    timing = Timing(0.05, [], list(samples), "ci", True, 1.0)
    return BenchCell(spec, "ok", "", timing, None, _env(), energy=energy)


def test_bench_json_and_the_stored_record_are_the_same_document(tmp_path):
    proc = run_cli("bench", TINY, "--batch-sizes", "1,2", "--in-process", "--max-time-per-cell", "0.3",
                   "--min-samples", "5", "--threads", "1", "--sensors", "none", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    docs = out["records"]
    assert [d["spec"]["batch_size"] for d in docs] == [1, 2]
    with open_store(str(tmp_path / "s.db")) as st:
        for d in docs:
            assert st.put(CellRecord.from_dict(d))
        for d in docs:
            stored = st.record(d["cell_id"])
            assert stored is not None and stored.to_dict() == d  # the same document, whole
            # raw samples kept; statistics derived: the printed median is the stored samples' median
            samples = sorted(stored.samples["latency_s"])
            n = len(samples)
            median = (samples[(n - 1) // 2] + samples[n // 2]) / 2
            view = out["metrics"][docs.index(d)]["values"]
            assert view["latency_median_s"] == pytest.approx(median)
        df = st.frame()
    assert sorted(df.batch_size) == [1, 2]
    assert "statistics" not in json.dumps(docs) and "median_s" not in json.dumps(docs)  # nothing derived in it


def test_identity_is_a_digest_of_the_whole_spec():
    base = _cell().spec
    ids = {base.cell_id}
    for change in (dict(isolation="in-process"), dict(timing=TimingSpec(processes=5)), dict(runtime="compile"),
                   dict(precision="int8"), dict(input_shape=((2, 3, 160, 160),)), dict(threads=1),
                   dict(machine="other"), dict(sensors="none")):
        ids.add(replace(base, **change).cell_id)
    assert len(ids) == 9  # every one of them is another cell
    assert CellSpec.from_dict(base.to_dict()).cell_id == base.cell_id  # and it survives the round trip


def test_record_is_frozen_and_versioned():
    rec = _cell().to_record()
    with pytest.raises(Exception):
        rec.status = "error"
    assert rec.to_dict()["schema"] == 2
    with pytest.raises(RecordError, match="schema 99"):
        CellRecord.from_dict({**rec.to_dict(), "schema": 99})
    assert BenchCell.from_record(CellRecord.from_json(rec.to_json())).to_record() == rec


def test_cpu_headline_power_is_never_an_idle_gpus_board_power():
    # parent commit: BenchCell.power was the first measured record whatever it covered -> the GPU's 60 W
    nvml = Energy("nvml:0", "measured", ["gpu board"], power_w=60.0, energy_per_item_j=0.3)
    rapl = Energy("rapl", "measured", ["package-0"], power_w=25.0, energy_per_item_j=0.125)
    view = metrics(_cell(energy=(nvml, rapl)).to_record())
    assert view.get("power_w") == 25.0 and view.get("energy_per_item_j") == 0.125
    assert view.get("sensor_nvml_0_power_w") == 60.0  # kept beside, named
    only_gpu = metrics(_cell(energy=(nvml,)).to_record())
    assert only_gpu.get("power_w") is None and "no sensor covering cpu" in only_gpu.notes["power_w"]
    assert only_gpu.get("sensor_nvml_0_power_w") == 60.0
    gpu = metrics(_cell(device="cuda:1", energy=(Energy("nvml:0", "measured", power_w=60.0),
                                                 Energy("nvml:1", "measured", power_w=250.0))).to_record())
    assert gpu.get("power_w") == 250.0 and gpu.get("sensor_nvml_0_power_w") == 60.0


def test_a_nan_figure_becomes_a_reason_never_a_silent_null():
    cell = _cell()
    rec = cell.to_record().with_(result={**cell.to_record().result, "static": {
        "macs": 1, "flops": float("nan"), "weight_bytes": 4, "activation_peak_bytes": 8}})
    view = metrics(rec)
    assert "flops" not in view.values and "nan" in view.notes["flops"]
    assert json.loads(rec.to_json())["result"]["static"]["flops"] is None  # JSON has no NaN


def test_every_cell_keeps_its_own_environment(tmp_path):
    # parent commit: one environment per machine fingerprint, so later cells showed the first one's load
    a = _cell().with_(environment=_env(load_avg=[0.1, 0.1, 0.1]))
    b = replace(_cell(), spec=replace(_cell().spec, batch_size=4, input_shape=((4, 3, 224, 224),)),
                environment=_env(load_avg=[3.5, 2.0, 1.0], extra={"worker_start": "fresh interpreter"}))
    with open_store(str(tmp_path / "e.db")) as st:
        st.put(a.to_record())
        st.put(b.to_record())
        recs = {r.batch_size: r for r in st.records()}
        df = st.frame()
    assert recs[2].environment["load_avg"] == [0.1, 0.1, 0.1]
    assert recs[4].environment["load_avg"] == [3.5, 2.0, 1.0]
    assert recs[4].environment["extra"]["worker_start"] == "fresh interpreter"
    assert set(df.hostname) == {"box"}  # parent commit: hostname always NULL
    assert sorted(map(tuple, (s[0] for s in df.input_shape))) == [(2, 3, 224, 224), (4, 3, 224, 224)]


def test_force_replaces_a_cell_only_when_the_new_one_is_stored(tmp_path):
    rec = _cell().to_record()
    with open_store(str(tmp_path / "f.db")) as st:
        assert st.put(rec)
        assert st.put(rec.with_(message="again")) is False  # without replace: the stored one stays
        assert st.put(rec.with_(message="again"), replace=True)
        assert st.count() == 1 and st.record(rec.cell_id).message == "again"


def test_claims_keep_two_studies_from_measuring_one_cell(tmp_path):
    with open_store(str(tmp_path / "c.db")) as st:
        assert st.claim(["a", "b"], "owner-1", 60) == {}
        held = st.claim(["b", "c"], "owner-2", 60)
        assert list(held) == ["b"] and "owner-1"[:8] in held["b"]
        assert st.claim(["a"], "owner-1", 60) == {}  # its own claim renews
        st.release(["a", "b"], "owner-1")
        assert st.claim(["b"], "owner-2", 60) == {}
        # a claim whose owner process is gone (same host) has expired
        with st.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE claims SET pid = 2147483646, owner = 'dead' WHERE cell_id = 'c'")
        assert st.claim(["c"], "owner-3", 60) == {}


def _old_store(url: str) -> None:
    """A store exactly as revision 0001 (the parent commit's schema) wrote it, with three cells."""
    from alembic import command
    from alembic.config import Config

    from dnnbench.store.store import MIGRATIONS

    engine = sa.create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    env = {"fingerprint": "oldfp", "cpu_model": "Old CPU", "load_avg": [1, 1, 1]}
    t = sa.MetaData()
    t.reflect(engine)
    with engine.begin() as conn:
        conn.execute(t.tables["environments"].insert().values(fingerprint="oldfp", info=env,
                                                              first_seen=datetime(2026, 1, 1, tzinfo=timezone.utc)))
        for i, (group, status) in enumerate((("profile", "ok"), ("time+memory", "ok"), ("time+memory", "oom"))):
            conn.execute(t.tables["runs"].insert().values(
                id=i + 1, cell_id=f"old{i}", fingerprint="oldfp", study="s", model_ref="torchvision:alexnet",
                input_shape=[[1, 3, 224, 224]], runtime="eager", device="meta" if group == "profile" else "cpu",
                precision="fp32", threads=2, batch_size=1 + i, metric_group=group, config={}, status=status,
                warnings=["CV is 12 %. Remedy: close other programs"] if i == 1 else [],
                started_at=datetime(2026, 1, 1, tzinfo=timezone.utc), finished_at=datetime(2026, 1, 1, 0, 0, 1,
                                                                                           tzinfo=timezone.utc),
                tool_version="0.1"))
        m = t.tables["metrics"]
        conn.execute(m.insert(), [{"run_id": 1, "name": "macs", "value": 714000000.0, "note": None},
                                  {"run_id": 2, "name": "latency_median_s", "value": 0.02, "note": None},
                                  {"run_id": 2, "name": "power_w", "value": None, "note": "unavailable: no sensor"}])
        conn.execute(t.tables["samples"].insert().values(run_id=2, name="latency_s", values=[0.02, 0.021, 0.019]))
    engine.dispose()


def test_a_revision_0001_store_migrates_without_losing_a_cell(store_url):
    _old_store(store_url)
    with open_store(store_url) as st:
        recs = st.records()
        df = st.frame()
    assert len(recs) == 3 and {r.kind for r in recs} == {"legacy"}
    timed = next(r for r in recs if r.spec["legacy_cell_id"] == "old1")
    assert timed.samples == {"latency_s": [0.02, 0.021, 0.019]}
    assert timed.warnings == (CellWarning("note", "CV is 12 %", "close other programs"),)
    assert timed.environment["cpu_model"] == "Old CPU" and "first-seen" in timed.unavailable["environment"]
    row = df.set_index("batch_size")
    assert row.loc[2, "latency_median_s"] == 0.02 and math.isnan(row.loc[2, "power_w"])
    assert row.loc[2, "unavailable"]["power_w"] == "unavailable: no sensor"  # the reason survives
    assert row.loc[1, "macs"] == 714000000.0 and row.loc[3, "status"] == "oom"
    engine = sa.create_engine(store_url)
    tables = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert "samples" not in tables and "claims" in tables


def test_schema_py_and_the_migrations_agree(store_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from dnnbench.store import schema

    open_store(store_url).close()
    engine = sa.create_engine(store_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": schema.VERSION_TABLE})
        diff = [d for d in compare_metadata(ctx, schema.metadata)]
    engine.dispose()
    assert diff == []


def test_a_running_study_keeps_renewing_its_claims(tmp_path):
    import time as _time

    from dnnbench.runner import StudyConfig, StudySummary, _Runner

    with open_store(str(tmp_path / "h.db")) as st:
        assert st.claim(["x"], "me", ttl_s=1) == {}
        runner = _Runner(st, StudySummary(st.where, "fp"), {}, StudyConfig(max_time_per_cell=0.1), {}, None, 0,
                         lambda *a: None, "me")
        runner.start_heartbeat(every_s=0.2)
        _time.sleep(1.5)  # past the first lease's expiry
        held = st.claim(["x"], "other", ttl_s=60)
        runner.release_all()
        assert held and "me"[:8] in held["x"]  # renewed by the heartbeat: still held
        assert st.renew("me", 60) == 1 and st.claim(["y"], "me", 60) == {}
