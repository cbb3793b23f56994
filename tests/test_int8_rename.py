"""Records and stores of earlier dnnbench: their "int8" (dynamic, linear layers only) reads as "int8-dynamic"."""

from __future__ import annotations

import sqlalchemy as sa

from dnnbench.core.measurements import CellSpec
from dnnbench.core.record import RECORD_SCHEMA, CellRecord, digest
from dnnbench.store import open_store


def _old_int8_record(model: str = "python:m.py:tiny", precision: str = "int8") -> CellRecord:
    spec = CellSpec(model, 1, "cpu", 1, runtime="onnxruntime", machine="fp0").to_dict()
    spec["precision"] = precision
    return CellRecord(kind="bench", spec=spec, status="ok", schema=1,
                      result={"runtime_info": {"runtime": "onnxruntime", "precision": precision}})


def test_a_schema_1_int8_record_reads_as_int8_dynamic_with_its_new_identity():
    old = _old_int8_record()
    doc = old.to_dict()
    assert doc["spec"]["precision"] == "int8"
    rec = CellRecord.from_dict(doc)
    assert rec.spec["precision"] == "int8-dynamic"
    assert rec.result["runtime_info"]["precision"] == "int8-dynamic"
    assert rec.schema == RECORD_SCHEMA == 2
    assert rec.cell_id == digest({**doc["spec"], "precision": "int8-dynamic"}) != old.cell_id
    # a current record's int8 is static int8 and stays so; other schema-1 precisions are untouched
    assert CellRecord.from_dict({**doc, "schema": 2}).spec["precision"] == "int8"
    fp32 = _old_int8_record(precision="fp32")
    assert CellRecord.from_dict(fp32.to_dict()).cell_id == fp32.cell_id


def test_migration_0003_renames_stored_int8_cells(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old, kept = _old_int8_record(), _old_int8_record(precision="fp32")
    with open_store(url) as st:
        assert st.put(old) and st.put(kept)
        with st.engine.begin() as conn:  # back to how revision 0002 left such a store
            conn.execute(sa.text("UPDATE runs SET record = :r WHERE cell_id = :c"),
                         {"r": old.to_json(), "c": old.cell_id})
            conn.execute(sa.text("UPDATE dnnbench_schema_version SET version_num = '0002'"))
            assert conn.execute(sa.text("SELECT precision FROM runs WHERE cell_id = :c"),
                                {"c": old.cell_id}).scalar() == "int8"
    with open_store(url) as st:  # a writer migrates to 0003
        new_id = digest({**old.spec, "precision": "int8-dynamic"})
        assert st.statuses([old.cell_id, new_id, kept.cell_id]) == {new_id: "ok", kept.cell_id: "ok"}
        recs = {r.cell_id: r for r in st.records()}
        assert set(recs) == {new_id, kept.cell_id}
        assert recs[new_id].spec["precision"] == "int8-dynamic"
        assert recs[kept.cell_id].spec["precision"] == "fp32"
        with st.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT precision FROM runs WHERE cell_id = :c"),
                                {"c": new_id}).scalar() == "int8-dynamic"
            assert conn.execute(sa.text("SELECT version_num FROM dnnbench_schema_version")).scalar() == "0003"
