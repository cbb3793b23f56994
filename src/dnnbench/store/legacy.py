"""Cells written before the result record (store revision 0001), as records of kind "legacy".

Their figures were derived by the dnnbench that stored them; the record keeps them as they were
(``result.metrics`` and ``result.notes``) with the raw samples, so that nothing is lost. Planted rows
(``CellRow``, used by tests and imports) take the same path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dnnbench.core.record import CellRecord, CellWarning

MIGRATED_ENVIRONMENT = ("migrated from a store of revision 0001, which kept one environment per machine "
                        "fingerprint: this is that machine's first-seen environment, not this cell's own")


def _iso(value) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value) if value else ""


def legacy_record(row: dict[str, Any], metrics: dict[str, float | None], notes: dict[str, str],
                  samples: dict[str, list[float]], environment: dict | None, own_environment: bool = False) -> CellRecord:
    """A record holding an old row's figures as stored (``row``: the runs columns of revision 0001)."""
    spec = {"model": row["model_ref"], "batch_size": row["batch_size"], "device": row["device"],
            "runtime": row["runtime"], "precision": row["precision"], "threads": row.get("threads"),
            "group": row["metric_group"], "config": row.get("config") or {}, "input_shape": row.get("input_shape"),
            "weights": row.get("weights"), "machine": row["fingerprint"],
            "legacy_cell_id": row["cell_id"]}
    unavailable = {} if own_environment else {"environment": MIGRATED_ENVIRONMENT}
    return CellRecord(
        kind="legacy", spec=spec, status=row["status"], message=row.get("message") or "",
        environment=dict(environment or {}), samples={k: [float(x) for x in v] for k, v in samples.items()},
        result={"metrics": {k: v for k, v in metrics.items() if v is not None},
                "notes": {k: v for k, v in notes.items() if v}},
        unavailable=unavailable, warnings=tuple(CellWarning.from_dict(w) for w in row.get("warnings") or ()),
        started_at=_iso(row.get("started_at")), finished_at=_iso(row.get("finished_at")),
        tool_version=row.get("tool_version") or "")
