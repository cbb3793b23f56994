"""Numbers measured on a device that cannot run dnnbench (a phone), read from its own tool's output.

``dnnbench import FILE --device-name NAME`` turns a file into ``bench`` records whose spec says
``provenance: "imported"``; ``core.view.metrics`` derives their statistics from the samples exactly as for
measured cells. Three formats are read (``detect`` picks one from the text):

- ``csv``: a header ``model,batch_size,runtime,precision,latency_s`` (optional ``threads``), one row per
  iteration; rows of the same (model, batch size, runtime, precision, threads) are one cell.
- ``executorch``: the log of ExecuTorch's ``executor_runner`` (examples/portable/executor_runner/
  executor_runner.cpp). Since it logs every execution — ``Iteration %u of %u: %f ms`` — each is a sample;
  the first execution after loading is the cold start, kept apart as dnnbench does (the runner runs no
  warm-up). Older runners print only ``Model executed successfully %u time(s) in %f ms.``: then the mean is
  known, the samples are not, and the record says so.
- ``tflite``: the log of TFLite's ``benchmark_model`` (tensorflow/lite/tools/benchmark/benchmark_model.cc).
  It prints aggregates only, never a per-iteration time: ``count=N first=.. curr=.. min=.. max=.. avg=..
  std=..`` (``Stat::OutputToStream`` in tensorflow/core/util/stats_calculator.h; newer builds add
  ``p5=.. median=.. p95=..``), in microseconds, once for the warm-up and once for the timed run, then
  ``Inference timings in us: Init: .., First inference: .., Warmup (avg): .., Inference (avg): ..``.
  Those aggregates are stored as printed (``result["reported_latency"]``), no sample is invented, and every
  figure that needs samples (CI, p90, p99, cv) is unavailable with why.

Everything a file gets wrong is one ``InputError`` naming the line (and column) before anything is stored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from dnnbench.core.errors import InputError, check_batch_size
from dnnbench.core.record import CellRecord, now_iso
from dnnbench.core.version import __version__

FORMATS = ("csv", "executorch", "tflite")
CSV_COLUMNS = ("model", "batch_size", "runtime", "precision", "latency_s")
CSV_OPTIONAL = ("threads",)
TOOL_NAMES = {"csv": "a CSV file", "executorch": "ExecuTorch executor_runner", "tflite": "TFLite benchmark_model"}
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_ET_ITER = re.compile(rf"Iteration (\d+) of (\d+): ({_NUM}) ms", re.IGNORECASE)
_ET_TOTAL = re.compile(rf"Model executed successfully (\d+) time\(s\) in ({_NUM}) ms", re.IGNORECASE)
_ET_LOAD = re.compile(rf"Model loaded in ({_NUM}) ms", re.IGNORECASE)
_TFL_STAT = re.compile(r"(?:^|[\s:])count=(\d+)(.*)$")
_TFL_KV = re.compile(rf"(\w+)=({_NUM})")
_TFL_FOOTPRINT = re.compile(rf"Memory footprint delta from the start of the tool \(MB\):.*?overall=({_NUM})")
_TFL_TIMINGS = re.compile(rf"Inference timings in us:.*?First inference: ({_NUM})", re.IGNORECASE)


@dataclass(frozen=True)
class Options:
    """What the file may not say: from the command line (``None``: the file must say it, or unknown)."""

    device_name: str
    model: str | None = None
    batch_size: int | None = None
    runtime: str | None = None
    precision: str | None = None
    threads: int | None = None
    device: str = "cpu"  # what the device's tool ran on: cpu, gpu, npu...
    # names the caller knows as models of a source (a bare "mobilenet_v2" -> "torchvision:mobilenet_v2"), so the
    # device's cells meet this machine's; None: only names with an explicit source ("timm:...") are references
    resolve: object = None

    def __post_init__(self):
        if self.batch_size is not None:
            check_batch_size(self.batch_size)
        t = self.threads
        if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t < 1):
            raise InputError(f"--threads {t!r} is not allowed", "a device runs at least one thread",
                             "use --threads 1 or more, or leave it out when unknown")


@dataclass
class ParsedCell:
    """One cell read from a file: its identity and either per-iteration samples or the tool's aggregates."""

    model: str
    batch_size: int
    runtime: str
    precision: str
    threads: int | None
    samples_s: list[float] = field(default_factory=list)
    cold_start_s: float | None = None
    reported: dict[str, float] = field(default_factory=dict)  # the tool's own aggregates, in seconds
    samples_why: str | None = None  # why there are no samples (aggregates only)
    extra: dict[str, Any] = field(default_factory=dict)  # what else the tool printed (load time...)


def _bad(path: str, where: str, why: str, fix: str) -> InputError:
    return InputError(f"cannot import {path}: {where}", why, fix)


def read_text(path: str) -> tuple[str, bytes]:
    """The file's text and raw bytes; one line when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise InputError(f"cannot import {path}: no such file", "the path does not exist",
                         "check the path (relative paths are from the current folder)") from None
    except IsADirectoryError:
        raise InputError(f"cannot import {path}: it is a directory", "import reads one file",
                         "pass the file the device's tool wrote") from None
    except OSError as exc:
        raise InputError(f"cannot import {path}", exc.strerror or str(exc), "check its permissions") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _bad(path, f"byte {exc.start} is not UTF-8 text", "the file is binary or in another encoding",
                   "pass the text output of the device's tool (a CSV or its log)") from exc
    return text, raw


def detect(text: str, path: str) -> str:
    """Which format ``text`` is in; one line when none."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if not first:
        raise _bad(path, "the file is empty", "it holds no latencies",
                   "pass the file the device's tool wrote (a CSV, or the log of executor_runner or benchmark_model)")
    if "," in first and "latency_s" in first.lower():
        return "csv"
    if _ET_ITER.search(text) or _ET_TOTAL.search(text):
        return "executorch"
    tflite_marks = "Running benchmark" in text or "timings in us" in text
    if tflite_marks and any(_TFL_STAT.search(ln) for ln in text.splitlines()):
        return "tflite"
    raise _bad(path, "unknown format", "it is neither a CSV with a header naming " + ",".join(CSV_COLUMNS)
               + " nor the log of ExecuTorch's executor_runner ('Iteration N of M: X ms') or TFLite's "
               "benchmark_model ('count=N ... avg=...')",
               "write the CSV header on its first line, or pass --from csv|executorch|tflite")


def parse(text: str, fmt: str, opts: Options, path: str) -> list[ParsedCell]:
    cells = {"csv": _csv, "executorch": _executorch, "tflite": _tflite}[fmt](text, opts, path)
    if not cells:
        raise _bad(path, "no latencies found", f"the file holds no {TOOL_NAMES[fmt]} timing lines",
                   "pass the complete output of the run")
    return cells


def _number(text: str, path: str, where: str, name: str, positive: bool = True) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise _bad(path, f"{where}: {name} {text!r} is not a number", "latencies are numbers",
                   f"fix {name} on that line") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise _bad(path, f"{where}: {name} {text!r} is not a positive finite number",
                   "a latency is a positive time", f"fix {name} on that line")
    return value


def _whole(text: str, path: str, where: str, name: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise _bad(path, f"{where}: {name} {text!r} is not a whole number", f"{name} counts items",
                   f"fix {name} on that line") from None
    if value < 1:
        raise _bad(path, f"{where}: {name} {value} is not allowed", f"{name} is at least 1", f"fix {name} on that line")
    return value


def _model(text: str, resolve=None) -> str:
    """The model as a reference when it names one (so it meets this machine's cells), else as given: an
    explicit ``source:name``, or a bare name ``resolve`` knows; any other bare name ("mv2") stays as written."""
    from dnnbench.core.errors import DnnbenchError
    from dnnbench.core.refs import parse_ref

    text = text.strip()
    if ":" not in text:
        known = resolve(text) if resolve is not None else None
        return known or text
    try:
        return str(parse_ref(text))
    except DnnbenchError:
        return text


def _csv(text: str, opts: Options, path: str) -> list[ParsedCell]:
    reader = csv.reader(io.StringIO(text))
    header = None
    for row in reader:
        if any(c.strip() for c in row):
            header = [c.strip().lower() for c in row]
            break
    if header is None:
        raise _bad(path, "the file is empty", "it holds no latencies", "write the header and one row per iteration")
    line_of_header = reader.line_num
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise _bad(path, f"line {line_of_header}: the header lacks column{'s' if len(missing) > 1 else ''} "
                   + ", ".join(missing), "every row needs " + ",".join(CSV_COLUMNS),
                   "write the header " + ",".join(CSV_COLUMNS) + " (threads optional)")
    unknown = [c for c in header if c not in CSV_COLUMNS + CSV_OPTIONAL]
    if unknown or len(set(header)) != len(header):
        raise _bad(path, f"line {line_of_header}: unexpected column{'s' if len(unknown) > 1 else ''} "
                   + ", ".join(unknown or [c for c in header if header.count(c) > 1]),
                   "the columns are " + ",".join(CSV_COLUMNS) + " and optionally threads, each once",
                   "remove that column")
    col = {name: i for i, name in enumerate(header)}
    cells: dict[tuple, ParsedCell] = {}
    for row in reader:
        n = reader.line_num
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise _bad(path, f"line {n}: {len(row)} fields, the header has {len(header)}",
                       "every row has one value per column", "fix that line")
        where = f"line {n}"
        value = {name: row[i].strip() for name, i in col.items()}
        for name in ("model", "runtime", "precision"):
            if not value[name]:
                raise _bad(path, f"{where}: column {name} is empty", "every row names its cell", f"fill in {name}")
        batch = _whole(value["batch_size"], path, where, "batch_size")
        latency = _number(value["latency_s"], path, where, "latency_s")
        threads = _whole(value["threads"], path, where, "threads") if value.get("threads") else opts.threads
        key = (_model(value["model"], opts.resolve), batch, value["runtime"], value["precision"], threads)
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = ParsedCell(*key)
        cell.samples_s.append(latency)
    if not cells:
        raise _bad(path, "the header is followed by no rows", "it holds no latencies", "write one row per iteration")
    return list(cells.values())


def _required(opts: Options, fmt: str, path: str) -> tuple[str, int, str, str]:
    missing = [f"--{n.replace('_', '-')}" for n in ("model", "batch_size", "runtime", "precision")
               if getattr(opts, n) is None]
    if missing:
        raise InputError(f"cannot import {path}: {TOOL_NAMES[fmt]} output does not say the "
                         + ", ".join(m[2:].replace("-", " ") for m in missing),
                         "the cell must be named", "pass " + " ".join(f"{m} VALUE" for m in missing))
    return _model(opts.model, opts.resolve), opts.batch_size, opts.runtime, opts.precision


def _executorch(text: str, opts: Options, path: str) -> list[ParsedCell]:
    model, batch, runtime, precision = _required(opts, "executorch", path)
    iters: list[float] = []
    declared = total_ms = total_n = load_ms = None
    for n, line in enumerate(text.splitlines(), 1):
        m = _ET_ITER.search(line)
        if m:
            i, of = int(m.group(1)), int(m.group(2))
            if declared is None:
                declared = of
            if of != declared or i != len(iters) + 1:
                raise _bad(path, f"line {n}: 'Iteration {i} of {of}' follows iteration {len(iters)} of {declared}",
                           "the log mixes runs or lost lines", "pass the log of one run, complete")
            iters.append(_number(m.group(3), path, f"line {n}", "the iteration time") / 1e3)
            continue
        m = _ET_TOTAL.search(line)
        if m:
            total_n, total_ms = int(m.group(1)), _number(m.group(2), path, f"line {n}", "the total time")
        m = _ET_LOAD.search(line)
        if m:
            load_ms = float(m.group(1))
    cell = ParsedCell(model, batch, runtime, precision, opts.threads)
    if load_ms is not None and math.isfinite(load_ms):
        cell.extra["load_s"] = load_ms / 1e3
    if total_ms is not None:
        cell.extra["total_s"] = total_ms / 1e3
    if iters:
        if declared != len(iters) or (total_n is not None and total_n != len(iters)):
            raise _bad(path, f"{len(iters)} iteration lines for a run of {declared if total_n is None else total_n}",
                       "the log is truncated", "pass the complete log of the run")
        if len(iters) < 2:
            raise _bad(path, "one execution only", "the first execution after loading is the cold start, and "
                       "no sample is left beside it", "run executor_runner with --num_executions 10 or more")
        cell.cold_start_s, cell.samples_s = iters[0], iters[1:]
        return [cell]
    if total_ms is None:
        return []
    if total_n < 1:
        raise _bad(path, "'Model executed successfully 0 time(s)'", "the run executed nothing",
                   "run executor_runner with --num_executions 10 or more")
    cell.reported = {"count": float(total_n), "mean_s": total_ms / 1e3 / total_n}
    cell.samples_why = (f"unavailable: this executor_runner printed only the total of {total_n} executions "
                        "(newer runners log each one: 'Iteration N of M')")
    return [cell]


def _tflite(text: str, opts: Options, path: str) -> list[ParsedCell]:
    model, batch, runtime, precision = _required(opts, "tflite", path)
    stats: list[tuple[int, dict[str, float]]] = []
    first_us = footprint_mb = None
    for n, line in enumerate(text.splitlines(), 1):
        if "Memory (bytes)" in line:  # --enable_op_profiling's memory Stat, not a time
            continue
        m = _TFL_STAT.search(line)
        if m:
            count = int(m.group(1))
            kv = {k: v for k, v in _TFL_KV.findall(m.group(2))}
            if count == 0:
                continue
            if "curr" not in kv:
                raise _bad(path, f"line {n}: a 'count=' line without curr=", "it is not benchmark_model's Stat line",
                           "pass benchmark_model's complete output")
            if "(all same)" in line or "avg" not in kv:  # Stat::OutputToStream when min == max
                kv.update(min=kv["curr"], max=kv["curr"], avg=kv["curr"], std="0", median=kv["curr"])
            values = {k: _number(v, path, f"line {n}", k) / 1e6 for k, v in kv.items()
                      if k in ("first", "curr", "min", "max", "avg", "median", "p5", "p95")}
            values["std"] = _number(kv.get("std", "0"), path, f"line {n}", "std", positive=False) / 1e6
            stats.append((count, values))
        m = _TFL_FOOTPRINT.search(line)
        if m:
            footprint_mb = float(m.group(1))
        m = _TFL_TIMINGS.search(line)
        if m:
            first_us = _number(m.group(1), path, f"line {n}", "First inference")
    if not stats:
        return []
    count, s = stats[-1]  # the timed run: benchmark_model prints the warm-up's Stat line before it
    cell = ParsedCell(model, batch, runtime, precision, opts.threads)
    cell.reported = {"count": float(count), "mean_s": s["avg"], "min_s": s["min"], "max_s": s["max"],
                     "std_s": s["std"]}
    if "median" in s:
        cell.reported["median_s"] = s["median"]
    if first_us is not None:
        cell.cold_start_s = first_us / 1e6
    if len(stats) > 1:
        cell.extra["warmup_runs"] = stats[0][0]
    if footprint_mb is not None and math.isfinite(footprint_mb):
        cell.extra["footprint_delta_bytes"] = footprint_mb * 2**20
    cell.samples_why = (f"unavailable: TFLite benchmark_model prints aggregates of its {count} timed runs only "
                        "(count, min, max, avg, std" + (", median" if "median" in s else "")
                        + "), never a per-iteration time")
    return [cell]


def machine_of(device_name: str) -> str:
    """The fingerprint an imported device's cells carry: its own, never this machine's."""
    return "imported:" + hashlib.sha256(device_name.strip().encode()).hexdigest()[:16]


def build_records(cells: list[ParsedCell], opts: Options, fmt: str, raw: bytes, path: str) -> list[CellRecord]:
    """One ``bench`` record per parsed cell: provenance ``imported``, what is unknown unavailable with why."""
    from dnnbench.core.measurements import Environment

    name = opts.device_name.strip()
    machine = machine_of(name)
    source = hashlib.sha256(raw).hexdigest()
    tool = TOOL_NAMES[fmt]
    src = tool if fmt == "csv" else f"{tool} output"
    why = f"unavailable: imported from {src}: the device's tool does not report it"
    try:
        when = datetime.fromtimestamp(os.path.getmtime(path), timezone.utc).isoformat()
    except OSError:
        when = now_iso()
    env: dict[str, Any] = {f.name: None for f in fields(Environment)}
    env.update(fingerprint=machine, cpu_model=name, tool_version=__version__, timestamp=when,
               extra={"provenance": "imported", "device_name": name, "source_tool": tool, "source_format": fmt,
                      "source_file": os.path.basename(path), "source_sha256": source})
    env["unavailable"] = {k: why for k in env if k not in ("fingerprint", "cpu_model", "tool_version", "timestamp",
                                                           "extra", "unavailable", "threads")}
    records = []
    for c in cells:
        spec = {"model": c.model, "batch_size": c.batch_size, "device": opts.device, "threads": c.threads,
                "runtime": c.runtime, "precision": c.precision, "machine": machine, "provenance": "imported",
                "device_name": name, "source_format": fmt, "source_sha256": source, "input_shape": None,
                "sensors": "none"}
        mem_why = why
        if "footprint_delta_bytes" in c.extra:
            mem_why = (f"unavailable: imported from {src}: it prints only an APPROXIMATE memory footprint delta of "
                       f"its own process ({c.extra['footprint_delta_bytes'] / 2**20:.1f} MiB, kept in the record), "
                       "not the peaks dnnbench measures")
        unavailable = {"memory": mem_why, "power": why, "static": f"unavailable: imported from {src}: "
                       "dnnbench did not count this model's operations on that device",
                       "machine_peak": f"unavailable: no measured peak for the imported device {name!r}"}
        if c.threads is None:
            unavailable["threads"] = f"unavailable: imported from {src}: pass --threads if it is known"
        if c.cold_start_s is None:
            unavailable["cold_start_s"] = why
        samples: dict[str, list[float]] = {}
        result: dict[str, Any] = {"imported": {"tool": tool, "format": fmt, "cold_start_s": c.cold_start_s,
                                               **c.extra}}
        if c.samples_s:
            samples["latency_s"] = list(c.samples_s)
            samples["warmup_s"] = []
            result["timing"] = {"cold_start_s": c.cold_start_s, "stop_reason": "imported", "warmup_steady": True,
                                "wall_s": None, "confidence": 0.95, "timer": tool, "time_cap_s": None}
        else:
            result["reported_latency"] = dict(c.reported)
            unavailable["latency_samples"] = c.samples_why or why
        records.append(CellRecord("bench", spec, "ok", "", env, samples, result, unavailable, (), when, when))
    return records


def import_records(path: str, opts: Options, fmt: str = "auto") -> tuple[str, list[CellRecord]]:
    """(format, records) read from ``path``; InputError (one line) for anything wrong, nothing stored."""
    if not opts.device_name or not opts.device_name.strip():
        raise InputError("--device-name is empty", "imported cells belong to a named device",
                         "pass --device-name 'Pixel 8' (any name that tells the device apart)")
    if opts.device and not re.fullmatch(r"[a-z][a-z0-9_:.-]*", opts.device):
        raise InputError(f"--device {opts.device!r} is not allowed", "it names what the tool ran on",
                         "use e.g. --device cpu, --device gpu or --device npu")
    text, raw = read_text(path)
    if fmt == "auto":
        fmt = detect(text, path)
    elif fmt not in FORMATS:
        raise InputError(f"unknown import format {fmt!r}", f"formats are {', '.join(FORMATS)}", "pass --from auto")
    cells = parse(text, fmt, opts, path)
    return fmt, build_records(cells, opts, fmt, raw, path)
