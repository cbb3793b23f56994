"""The one result record of a cell, from the worker that measured it to the report that shows it.

A ``CellRecord`` is frozen and versioned (``schema``). It holds what defines the measurement (``spec``:
everything, so ``cell_id`` — a digest of the whole spec — changes whenever anything measured differently
would), the raw observations (``samples``: every timed call; ``result``: the kind's records such as
timing metadata, memory, energy per sensor, runtime details, static counts), the environment captured
in the process that measured it, structured warnings, and for every figure that could not be observed
the reason (``unavailable``). No statistic is stored: ``core.view.metrics`` derives the flat view
(median, CI, throughput, roofline fraction, headline power...) from the record on demand, the same way
for ``bench --format json``, the store's metric columns, analysis, report, pick and the CLI.
``to_dict()`` is the JSON document the worker emits, ``bench --format json`` prints and the store keeps whole.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from dnnbench.core.errors import DnnbenchError
from dnnbench.core.version import __version__

RECORD_SCHEMA = 2  # bump (and teach from_dict the old shape) whenever the document's meaning changes
# schema 2: precision "int8" means static int8 (calibrated, convolutions included); schema 1's "int8" was dynamic
# quantization of the linear layers, read as "int8-dynamic" (``rename_dynamic_int8``)
KINDS = ("profile", "bench", "accuracy", "legacy")  # legacy: a cell migrated from a pre-record store
STATUSES = ("ok", "oom", "error", "skipped", "interrupted")


class RecordError(DnnbenchError):
    """A result document that this dnnbench cannot read."""


def _json_safe(value: Any) -> Any:
    """NaN and infinities have no JSON spelling: they become None (the caller records why)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def digest(spec: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``spec``: a cell's identity."""
    return hashlib.sha256(json.dumps(_json_safe(spec), sort_keys=True, default=str).encode()).hexdigest()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class CellWarning:
    """Something that makes a result less trustworthy: its ``kind``, what was seen, and what to do about it."""

    kind: str  # "cv", "iqr", "ci", "load", "throttle", "governor", "warmup", "samples", "peak", "uncounted", ...
    message: str
    remedy: str = ""

    def __str__(self) -> str:
        return f"{self.message}. Remedy: {self.remedy}" if self.remedy else self.message

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message, "remedy": self.remedy}

    @staticmethod
    def from_dict(d: dict[str, Any] | str) -> "CellWarning":
        if isinstance(d, str):  # a migrated store kept warnings as text
            msg, sep, remedy = d.partition(". Remedy: ")
            return CellWarning("note", msg, remedy if sep else "")
        return CellWarning(d.get("kind") or d.get("code") or "note", d.get("message", ""), d.get("remedy", ""))


@dataclass(frozen=True)
class CellRecord:
    """One cell's result: spec, status, raw observations, the cell's own environment, warnings, reasons."""

    kind: str  # one of KINDS
    spec: dict[str, Any]
    status: str  # one of STATUSES
    message: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # figure or sub-record -> why it is missing
    warnings: tuple[CellWarning, ...] = ()
    started_at: str = field(default_factory=now_iso)
    finished_at: str = field(default_factory=now_iso)
    tool_version: str = __version__
    schema: int = RECORD_SCHEMA

    @property
    def cell_id(self) -> str:
        return digest(self.spec)

    @property
    def model(self) -> str:
        return str(self.spec.get("model", ""))

    @property
    def batch_size(self) -> int:
        return int(self.spec.get("batch_size") or 0)

    @property
    def fingerprint(self) -> str | None:
        return self.spec.get("machine") or self.environment.get("fingerprint")

    def with_(self, **changes: Any) -> "CellRecord":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe({
            "schema": self.schema, "kind": self.kind, "cell_id": self.cell_id, "spec": self.spec,
            "status": self.status, "message": self.message, "environment": self.environment,
            "samples": self.samples, "result": self.result, "unavailable": self.unavailable,
            "warnings": [w.to_dict() for w in self.warnings], "started_at": self.started_at,
            "finished_at": self.finished_at, "tool_version": self.tool_version,
        })

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "CellRecord":
        schema = d.get("schema")
        if not isinstance(schema, int) or schema > RECORD_SCHEMA:
            raise RecordError(f"a result record has schema {schema!r}",
                              f"this dnnbench {__version__} reads records up to schema {RECORD_SCHEMA}",
                              "upgrade dnnbench: pip install -U dnnbench")
        if schema < 2:
            d = rename_dynamic_int8(d)
            schema = d.get("schema", schema)
        if d.get("kind") not in KINDS:
            raise RecordError(f"a result record has kind {d.get('kind')!r}", f"kinds are {', '.join(KINDS)}",
                              "check that the document is a dnnbench result record")
        return CellRecord(
            kind=d["kind"], spec=dict(d.get("spec") or {}), status=d.get("status", "error"),
            message=d.get("message") or "", environment=dict(d.get("environment") or {}),
            samples={k: list(v) for k, v in (d.get("samples") or {}).items()}, result=dict(d.get("result") or {}),
            unavailable=dict(d.get("unavailable") or {}),
            warnings=tuple(CellWarning.from_dict(w) for w in d.get("warnings") or ()),
            started_at=d.get("started_at") or "", finished_at=d.get("finished_at") or "",
            tool_version=d.get("tool_version") or "", schema=schema,
        )

    @staticmethod
    def from_json(text: str) -> "CellRecord":
        return CellRecord.from_dict(json.loads(text))


def rename_dynamic_int8(doc: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 record document whose precision was "int8" (dynamic, linear layers only) as "int8-dynamic":
    its spec, its runtime info and its cell_id; any other document unchanged. Used by ``from_dict`` and by the
    store's migration 0003."""
    spec = doc.get("spec") or {}
    if spec.get("precision") != "int8":
        return doc
    doc = dict(doc)
    doc["schema"] = 2
    doc["spec"] = {**spec, "precision": "int8-dynamic"}
    result = doc.get("result")
    if isinstance(result, dict) and isinstance(result.get("runtime_info"), dict) \
            and result["runtime_info"].get("precision") == "int8":
        doc["result"] = {**result, "runtime_info": {**result["runtime_info"], "precision": "int8-dynamic"}}
    if "cell_id" in doc:
        doc["cell_id"] = digest(doc["spec"])
    return doc
