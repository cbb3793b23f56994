"""One self-contained HTML file: figures inline (base64 PNG), styles and the table-sorting script inline.

Nothing is fetched: no fonts, scripts or images from the network, so the file opens offline and can be
mailed or archived as it is.
"""

from __future__ import annotations

import base64
import json
from html import escape

import pandas as pd

from dnnbench.analysis import paper
from dnnbench.core import units as u
from dnnbench.analysis.findings import Finding
from dnnbench.analysis.tables import model_tasks, task_metric, task_title, tasks
from dnnbench.core.measurements import item_unit
from dnnbench.report.figures import FigureOut, ReportData

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:1.5em 2em 4em}
h1{margin:.2em 0}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
nav a{margin-right:1em}.muted{color:#666}.card{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:.8em 1.1em;margin:.8em 0}
.card.na{border-style:dashed;color:#555}.card h3{margin:.1em 0 .4em;font-size:1.05em}.paper{color:#8a5a12}
table{border-collapse:collapse;font-size:12.5px;background:#fff}th,td{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}td.l{white-space:normal}
th{background:#f0f0f0;position:sticky;top:0}td.l,th.l{text-align:left}
table.sortable th{cursor:pointer;user-select:none}table.sortable th[aria-sort=ascending]::after{content:" ▲"}
table.sortable th[aria-sort=descending]::after{content:" ▼"}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1em}
figure{margin:0;background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:.5em}
figure img{width:100%;height:auto;display:block}figcaption{font-size:12.5px;color:#444;margin-top:.3em}
figure.nodata{border-style:dashed}.scroll{overflow-x:auto;max-height:70vh}
.status-ok{color:#1a7f37}.status-oom,.status-error{color:#b42318}.status-skipped{color:#777}
code{background:#f0f0f0;padding:0 3px;border-radius:3px}
"""

# Sort a table by the clicked header: numbers by data-v (SI value), text otherwise; click again to reverse.
JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var asc=th.getAttribute('aria-sort')!=='ascending';
      t.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort')});
      th.setAttribute('aria-sort',asc?'ascending':'descending');
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      function key(r){var c=r.cells[i],v=c.getAttribute('data-v');
        if(v!==null&&v!==''){return [0,parseFloat(v)]}return [1,c.textContent.trim().toLowerCase()]}
      rows.sort(function(a,b){var x=key(a),y=key(b);
        if(x[0]!==y[0]){return x[0]-y[0]}
        var r=x[1]<y[1]?-1:(x[1]>y[1]?1:0);return asc?r:-r});
      rows.forEach(function(r){body.appendChild(r)});
    });
  });
});
"""


def _td(text, value=None, left=False, cls="") -> str:
    attrs = ""
    if value is not None and isinstance(value, (int, float)) and value == value:
        attrs += f' data-v="{float(value):.9g}"'
    classes = " ".join(c for c in ("l" if left else "", cls) if c)
    if classes:
        attrs += f' class="{classes}"'
    return f"<td{attrs}>{escape(str(text))}</td>"


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None


RESULT_COLUMNS = [
    # (header, column, formatter)
    ("time / image", "latency_per_item_s", u.seconds),
    ("latency (batch)", "latency_median_s", u.seconds),
    ("CV", "latency_cv", lambda v: u.pct(v, 0)),
    ("images/s", "throughput_items_per_s", u.rate),
    ("memory total", "memory_total_bytes", u.mib),
    ("memory model", "memory_model_bytes", u.mib),
    ("memory tensors", "memory_tensors_bytes", u.mib),
    ("estimate", "memory_estimate_bytes", u.mib),
    ("GMACs / image", "gmacs_per_item", lambda v: "-" if v is None else f"{v:.3g}"),
    ("% of peak", "fraction_of_peak", lambda v: u.pct(v, 0)),
    ("power", "power_w", u.watts),
    ("energy / image", "energy_per_item_j", u.joules),
    ("top-1", "top1", u.pct),
]


def _results_table(data: ReportData) -> str:
    from dnnbench.analysis.tables import bench_table, setups

    frames = []
    for s in setups(data.df):
        b = bench_table(data.df, s, statuses=("ok", "oom", "error", "skipped"))
        if not b.empty:
            conf = "" if (s.runtime, s.precision) == ("eager", "fp32") else f", {s.runtime} {s.precision}"
            frames.append(b.assign(_setup=f"{s.device}, {s.threads or '-'} thr{conf}"))
    several = len(tasks(data.df)) > 1  # then a task column, time per item in its unit, and the task's metric
    columns = RESULT_COLUMNS if not several else [
        ("time / item", "latency_per_item_s", u.seconds), *RESULT_COLUMNS[1:3], ("items/s", "throughput_items_per_s", u.rate),
        *RESULT_COLUMNS[4:-1], ("quality", "quality", None)]
    head = ["model", "batch", "setup", "status"] + (["task (item)"] if several else []) \
        + [h for h, _, _ in columns] + ["warnings"]
    rows = []
    for b in frames:
        for _, r in b.iterrows():
            cells = [_td(r["model"], left=True), _td(int(r["batch_size"]), int(r["batch_size"])),
                     _td(r["_setup"], left=True), _td(r["status"], left=True, cls=f"status-{r['status']}")]
            task = r.get("task") if isinstance(r.get("task"), str) else "classification"
            if several:
                cells.append(_td(f"{task.replace('_', ' ')} ({item_unit(task)})", left=True))
            for _, name, fmt in columns:
                v = _num(r.get(name))
                if fmt is None:  # the task's quality metric, named
                    metric, label, better = task_metric(task)
                    cells.append(_td("-" if v is None else f"{label} {u.pct(v) if better == 'max' else f'{v:.3g}'}", v))
                    continue
                cells.append(_td(fmt(v), v))
            n = len(r["warnings"] or []) if isinstance(r.get("warnings"), list) else 0
            cells.append(_td(n, n))
            rows.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        # a profile-only store still gets a table: the static figures per model
        m = data.models
        head = ["model", "params", "weights", "GMACs / image", "activation peak (batch 1)", "top-1", "top-1 source",
                "paper top-1"]
        for ref, r in m.iterrows():
            rows.append("<tr>" + "".join([
                _td(r["model"], left=True), _td(u.count(_num(r["params"])), _num(r["params"])),
                _td(u.mib(_num(r["weight_bytes"]), 1), _num(r["weight_bytes"])),
                _td("-" if _num(r["macs_per_item"]) is None else f"{r['macs_per_item'] / 1e9:.3g}", _num(r["macs_per_item"])),
                _td(u.mib(_num(r["activation_peak_bytes_b1"]), 1), _num(r["activation_peak_bytes_b1"])),
                _td(u.pct(_num(r["top1"])), _num(r["top1"])), _td(r["top1_source"] if isinstance(r["top1_source"], str) else "-", left=True),
                _td(u.pct(_num(r["paper_top1"])), _num(r["paper_top1"]))]) + "</tr>")
    ths = "".join(f'<th class="{"l" if i < 4 or h == "task (item)" else ""}">{escape(h)}</th>' for i, h in enumerate(head))
    return (f'<div class="scroll"><table class="sortable" id="results"><thead><tr>{ths}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _runtimes_section(df: pd.DataFrame) -> str:
    """Per machine/device/threads with more than one configuration: a row per model and batch, a column group per
    (runtime, precision) — time per image and speed-up over eager fp32, memory, cold start, equivalence."""
    from dnnbench.analysis.runtimes import comparisons, config_label

    comps = comparisons(df)
    if not comps:
        return ("<p>Only one runtime and precision was measured. Compare them under one protocol with e.g. "
                "<code>dnnbench study MODELS --runtime all --precision fp32,int8</code>.</p>")
    parts = []
    for comp in comps:
        head1 = '<th class="l" rowspan="2">model</th><th rowspan="2">batch</th>' + "".join(
            f'<th colspan="5">{escape(config_label(*c))}</th>' for c in comp.configs)
        head2 = "".join("<th>time / image</th><th>memory</th><th>artifact</th><th>cold start</th>"
                        "<th>vs eager fp32</th>" for _ in comp.configs)
        rows = []
        for ref, model, b in comp.rows():
            cells = [_td(model, left=True), _td(b, b)]
            for rt, prec in comp.configs:
                r = comp.cell(ref, b, rt, prec)
                if r is None:
                    cells += [_td("-")] * 5
                    continue
                if r["status"] != "ok":
                    msg = r["message"] if isinstance(r["message"], str) else ""
                    cells.append(f'<td class="l status-{escape(r["status"])}" colspan="5" title="{escape(msg)}">'
                                 f'{escape(r["status"])}: {escape(msg[:140])}</td>')
                    continue
                t, sp = _num(r["latency_per_item_s"]), _num(r["speedup_vs_reference"])
                reference = (rt, prec) == ("eager", "fp32")
                cells.append(_td(u.seconds(t) + ("" if reference or sp is None else f" ({sp:.2g}x)"), t))
                mem = _num(r["memory_total_bytes"])
                cells.append(_td(u.mib(mem), mem))
                art = _num(r["artifact_bytes"])
                cells.append(_td(u.mib(art, 2), art))
                cold, prep = _num(r["cold_start_s"]), _num(r["prepare_s"])
                cells.append(_td(u.seconds(cold) + (f" + {u.seconds(prep)} prep." if prep and prep >= 0.01 else ""),
                                 (cold or 0) + (prep or 0)))
                if reference:
                    cells.append(_td("reference"))
                else:
                    diff, agree = _num(r["equivalence_max_abs_diff"]), _num(r["equivalence_top1_agreement"])
                    text = (f"max |diff| {diff:.2g}" if diff is not None else "max |diff| -") + \
                           (f", top-1 {u.pct(agree, 0)}" if agree is not None else "")
                    cells.append(_td(text, diff))
            rows.append("<tr>" + "".join(cells) + "</tr>")
        parts.append(f"<h3>{escape(comp.label)}</h3>"
                     f'<div class="scroll"><table class="runtimes"><thead><tr>{head1}</tr><tr>{head2}</tr></thead>'
                     f'<tbody>{"".join(rows)}</tbody></table></div>')
    parts.append(
        "<p class=\"muted\">Time / image: median time of one batch / batch size, and in brackets eager fp32's time "
        "over this one's (above 1: faster). Memory: on CPU the worker's peak resident set while running (runtime "
        "included; one-off preparation such as export, compilation or quantization is recorded apart), on GPU the "
        "CUDA allocator's peak. Artifact: the size of the deployable file the configuration produces, the app's "
        "download and storage cost (eager and compile: the state dict at that precision as torch.save writes it; "
        "onnxruntime: the .onnx file it runs, external data included; openvino: the IR .xml + .bin it compiled; "
        "executorch: the .pte program). Cold start: the first call (torch.compile compiles in it), plus the preparation "
        "before it (export and session build, quantization, conversion). vs eager fp32: the largest |difference| "
        "between this configuration's outputs and eager fp32's on the same input, and the fraction of rows whose "
        "top-1 class agrees; with random weights the logits lie close together, so top-1 agreement is a "
        "pessimistic figure.</p>")
    return "".join(parts)


def _by_task(df: pd.DataFrame, found: list[Finding], figures: list[FigureOut], part: str) -> str:
    """The findings (or figures) as they are with one task; with several, a section per task
    (``id="findings-TASK"``/``"figures-TASK"``) naming its models and quality metric."""
    def body(fs, gs):
        return ("".join(_finding(f) for f in fs) if part == "findings"
                else f'<div class="figs">{"".join(_figure(g) for g in gs)}</div>')

    task_list = tasks(df)
    if len(task_list) <= 1:
        return body(found, figures)
    of = model_tasks(df)
    out = []
    for task in task_list:
        models = [ref.removeprefix("torchvision:") for ref, t in of.items() if t == task]
        metric, label, _ = task_metric(task)
        fs = [f for f in found if getattr(f, "task", "classification") == task]
        gs = [g for g in figures if getattr(g, "task", "classification") == task]
        out.append(f'<section class="task" id="{part}-{escape(task)}"><h3>{escape(task_title(task))}</h3>'
                   f'<p class="muted">{len(models)} model{"s" if len(models) != 1 else ""} '
                   f'({escape(", ".join(models))}); time per {item_unit(task)}; quality: {escape(label)} '
                   f'(<code>{escape(metric)}</code>)</p>{body(fs, gs)}</section>')
    rest = [f for f in found if getattr(f, "task", "classification") not in task_list] if part == "findings" else []
    if rest:
        out.append('<section class="task" id="findings-all"><h3>Every task</h3>' + body(rest, []) + "</section>")
    return "".join(out)


def _finding(f: Finding) -> str:
    details = "".join(f"<li>{escape(d)}</li>" for d in f.details)
    paper_line = f'<p class="paper">{escape(f.paper)}</p>' if f.paper else ""
    return (f'<div class="card{"" if f.available else " na"}" id="finding-{escape(f.key)}"><h3>{escape(f.title)}</h3>'
            f"<p>{escape(f.text)}</p>{f'<ul>{details}</ul>' if details else ''}{paper_line}</div>")


def _figure(fig: FigureOut) -> str:
    b64 = base64.b64encode(fig.png).decode("ascii")
    cap = escape(fig.caption)
    if fig.no_data:
        cap = f"<strong>no data:</strong> {escape(fig.no_data)}"
    return (f'<figure class="fig{" nodata" if fig.no_data else ""}" id="fig-{fig.key}">'
            f'<img alt="{escape(fig.title)}" src="data:image/png;base64,{b64}">'
            f"<figcaption><strong>{escape(fig.title)}.</strong> {cap}</figcaption></figure>")


ENV_FIELDS = ("cpu_model", "physical_cores", "logical_cores", "arch", "os", "gpu_name", "gpu_driver", "python_version",
              "torch_version", "cuda_version", "cudnn_version", "cpu_governor", "cpu_freq_mhz", "threads", "load_avg",
              "tool_version", "timestamp", "extra")


def _environments(envs: dict[str, dict]) -> str:
    if not envs:
        return "<p>No environment recorded.</p>"
    fps = list(envs)
    head = "".join(f"<th>{escape(fp)}</th>" for fp in fps)
    rows = []
    for k in ENV_FIELDS:
        vals = [envs[fp].get(k) for fp in fps]
        if all(v is None for v in vals):
            continue
        cells = "".join(_td("-" if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else v), left=True)
                        for v in vals)
        rows.append(f'<tr><td class="l"><code>{k}</code></td>{cells}</tr>')
    why = {k: v for fp in fps for k, v in (envs[fp].get("unavailable") or {}).items()}
    notes = "".join(f"<li><code>{escape(k)}</code>: {escape(str(v))}</li>" for k, v in why.items())
    return (f'<table><thead><tr><th class="l">field</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            + (f"<p>Not recorded:</p><ul>{notes}</ul>" if notes else ""))


def _warnings(items: list[dict]) -> str:
    if not items:
        return "<p>No noise warnings were stored with these results.</p>"
    rows = "".join("<tr>" + _td(w["model"], left=True) + _td(w["batch_size"], w["batch_size"]) + _td(w["group"], left=True)
                   + _td(w["message"], left=True) + _td(w["remedy"] or "-", left=True) + "</tr>" for w in items)
    return (f'<p>{len(items)} warnings. Each says what makes a figure less trustworthy and what to do about it.</p>'
            '<div class="scroll"><table class="sortable" id="warnings"><thead><tr><th class="l">model</th><th>batch</th>'
            '<th class="l">group</th><th class="l">warning</th><th class="l">remedy</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def _configs(df: pd.DataFrame) -> str:
    if df.empty or "config" not in df.columns:
        return ""
    seen = []
    for c in df["config"]:
        if isinstance(c, dict) and c.get("device") != "meta" and c not in seen:
            seen.append(c)
    if not seen:
        return ""
    return "<p>Stored bench settings: " + "; ".join(f"<code>{escape(json.dumps(c, sort_keys=True))}</code>"
                                                     for c in seen[:5]) + "</p>"


METHODS = f"""
<h3>Counting conventions</h3>
<p>MACs are multiply-accumulates of convolutions, linear layers, matmul and attention, counted at the
dispatcher on meta tensors (no compute). FLOPs = 2 x MACs exactly; the paper's "G-Ops" are these FLOPs
(it counted a multiply-add as two operations). Elementwise ops, normalisation, pooling and softmax are
<code>other_flops</code>, never mixed into MACs. Params count shared parameters once; weight bytes are at
the model's dtype. The activation peak is the largest sum of live tensors during one forward (weights
excluded): the static memory estimate is weights + activation peak.</p>
<h3>Timing protocol</h3>
<p>Each (model, batch size) cell runs in a fresh worker process with an explicit thread count. The first
call (cold start) is kept apart; warm-up runs until the median of the last calls is steady; then samples
are taken until the 95 % confidence interval of the median is within the target (or the time cap is
spent). The figures use the median time of one batch; time per image = median / batch size; images/s =
batch size / median. On GPUs every timing boundary is synchronised. CV and IQR above 10 %, a load average
above the core count, an unsettled warm-up or too few samples are stored as warnings with their remedy
(listed below).</p>
<h3>Memory semantics</h3>
<p><strong>memory total</strong>: on CPU the peak resident set (VmHWM) of the whole worker process —
interpreter and runtime included, hence a floor of hundreds of MiB; on GPU the CUDA caching allocator's
peak allocated bytes (the CUDA context is not included). <strong>memory model</strong>: on CPU the peak
RSS above the baseline taken before the model was built (what this model at this batch cost); on GPU the
allocator peak. <strong>estimate</strong>: weights + activation peak from the static profile, without
the runtime's overhead or allocator fragmentation. The paper measured the whole system's memory on a
Jetson TX1 (floor about 200 MB).</p>
<h3>Energy scope</h3>
<p>Energy figures come from one sensor and cover only its domains: RAPL — the CPU packages (and DRAM where
exposed), not the whole machine; NVML — the GPU board; Jetson INA3221 — the module input rail; an external
meter — whatever it is wired to. Power is the mean over a window at least max(2 s, 10 x the sensor's update
period), after a 2 s settle and an idle baseline. Energy per image = power x time per image (idle
included); "above idle" subtracts the same sensor's idle baseline, as the paper did ({paper.POWER_ABOVE_IDLE_W}
W above idle on the TX1). Figures from different sensors are never added. A figure that could not be
measured is shown as unavailable, never as 0.</p>
<h3>Predictions</h3>
<p><code>dnnbench pick</code> uses measured values where the cell was measured; otherwise it predicts with a
cost model fitted per setup and batch size (time per image from MACs, memory from the static estimate,
energy from MACs, power as the measured mean) and labels the value "predicted" with the fit's
leave-one-out error (the median error made predicting each measured model from the others).</p>
<p class="muted">Paper: {escape(paper.CITATION)}; measured on an {escape(paper.DEVICE)}.</p>
"""


def _setups_section(data: ReportData, cmp, figs: list[FigureOut], per_setup: dict[str, list[Finding]]) -> str:
    """Setups side by side: a table (models x setups), the per-setup figures and findings; one line with one setup."""
    from dnnbench.analysis.setups import METRICS, bench_setups

    if cmp is None:
        have = bench_setups(data.df)
        if not have:
            return "<p>Not shown: nothing was measured on a device yet, so there are no setups to compare.</p>"
        return (f"<p>Not shown: this store holds bench cells of one setup only ({escape(have[0].name)}); measure the "
                "same models on another machine, device, runtime or precision (or <code>dnnbench import</code> a "
                "device's figures) into this store to compare setups.</p>")
    setups_list = "".join(
        f"<li><strong>{escape(s.name)}</strong> — {escape(s.label)}; machine <code>{escape(s.fingerprint[:16])}</code>"
        + (f", host {escape(s.hostname)}" if s.hostname else "") + (", imported" if s.imported else "")
        + (f", study <code>{escape(s.study)}</code>" if s.study else "")
        + f"; {s.cells} ok bench cells, newest {escape(s.date or '-')}</li>" for s in cmp.setups)
    fmt = {"latency_per_item_s": u.seconds, "memory_total_bytes": u.mib, "energy_per_item_j": u.joules}
    head1 = ('<th class="l" rowspan="2">model</th><th rowspan="2">quality</th>'
             + "".join(f'<th colspan="{len(METRICS)}">{escape(s.name)}</th>' for s in cmp.setups))
    head2 = "".join(f"<th>{escape(label)}</th>" for _ in cmp.setups for _, label in METRICS)
    rows = []
    for m in cmp.models:
        q, metric, source = cmp.quality.get(m, (None, "top1", "unknown"))
        qtext = "-" if q is None else (f"{u.pct(q)}" if metric != "epe" else f"{q:.3g} px")
        label = {"top1": "top-1"}.get(metric, metric)
        cells = [_td(cmp.names[m], left=True), _td("-" if q is None else f"{label} {qtext} ({source})", q)]
        for s in cmp.setups:
            v = cmp.values.get((m, s.name))
            if v is None:
                why = cmp.missing.get((m, s.name), "not measured")
                cells.append(f'<td class="l muted" colspan="{len(METRICS)}">{escape(why)}</td>')
                continue
            for metric_name, _ in METRICS:
                x = v.get(metric_name)
                cells.append(_td(fmt[metric_name](x) if x is not None else "-", x))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    table = (f'<div class="scroll"><table class="runtimes" id="table-setups"><thead><tr>{head1}</tr><tr>{head2}</tr>'
             f'</thead><tbody>{"".join(rows)}</tbody></table></div>')
    finds = []
    for i, s in enumerate(cmp.setups):
        cards = "".join(_finding(f).replace(f'id="finding-{escape(f.key)}"', f'id="setup{i}-finding-{escape(f.key)}"', 1)
                        for f in per_setup.get(s.name, []))
        finds.append(f'<details{" open" if i < 2 else ""}><summary><strong>{escape(s.name)}</strong></summary>'
                     f"{cards}</details>")
    return (f"<p>{len(cmp.setups)} setups have bench cells. Each figure is that setup's own measurement at batch "
            f"{cmp.batch_size}, never predicted; quality belongs to the weights (measured with "
            "<code>dnnbench accuracy</code> or published), so it is one figure per model.</p>"
            f"<ul>{setups_list}</ul>{table}"
            f'<div class="figs">{"".join(_figure(g) for g in figs)}</div>'
            f"<h3>Findings per setup</h3>{''.join(finds)}")


def page(data: ReportData, figures: list[FigureOut], found: list[Finding], envs: dict[str, dict],
         warnings: list[dict], store_where: str, version: str, setups_part: tuple = (None, [], {})) -> str:
    from dnnbench.analysis.tables import setups

    s = data.setup
    all_setups = setups(data.df)
    counts = data.df["status"].value_counts().to_dict() if not data.df.empty else {}
    n_models = data.df["model_ref"].nunique() if not data.df.empty else 0
    summary = (f"{len(data.df)} cells ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}) of {n_models} models. "
               + (f"Figures and findings are for <strong>{escape(s.label)}</strong>, measured {escape(s.date)}."
                  if s else "Nothing was measured on a device yet: only the static profile is shown."))
    if len(all_setups) > 1:
        others = "; ".join(escape(o.label) for o in all_setups[1:])
        summary += (f" Other setups in the store (side by side under <a href=\"#setups-compared\">Setups compared</a>, "
                    f"and in the results table): {others}.")
    no_data = [f for f in figures if f.no_data]
    title = f"dnnbench report — {escape(data.subtitle)}"
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="icon" href="data:,"><title>{title}</title><style>{CSS}</style></head>
<body><main>
<h1>dnnbench report</h1>
<p class="muted">{escape(data.subtitle)} · store <code>{escape(store_where)}</code> · generated {escape(data.generated)}
by dnnbench {escape(version)}</p>
<nav><a href="#findings">Findings</a><a href="#figures">Figures</a><a href="#results">Results</a>
<a href="#setups-compared">Setups compared</a><a href="#runtimes">Runtimes and precisions</a>
<a href="#environment">Environment</a><a href="#warnings-section">Noise warnings</a><a href="#methods">How this was measured</a></nav>
<p>{summary}</p>
<h2 id="findings">Findings</h2>
{_by_task(data.df, found, figures, "findings")}
<h2 id="figures">Figures</h2>
<p class="muted">{len(figures)} figures{f", {len(no_data)} without data (each says why and how to get it)" if no_data else ""}.
PNG and SVG copies are in the <code>figures/</code> folder next to this file.</p>
{_by_task(data.df, found, figures, "figures")}
<h2 id="results">Results</h2>
<p class="muted">Click a column header to sort. Values in SI, shown in convenient units.</p>
{_results_table(data)}
<section id="setups-compared"><h2>Setups compared</h2>
{_setups_section(data, *setups_part)}
</section>
<h2 id="runtimes">Runtimes and precisions</h2>
{_runtimes_section(data.df)}
<h2 id="environment">Environment</h2>
{_environments(envs)}
{_configs(data.df)}
<h2 id="warnings-section">Noise warnings</h2>
{_warnings(warnings)}
<h2 id="methods">How this was measured</h2>
{METHODS}
</main><script>{JS}</script></body></html>
"""
    return body


__all__ = ["page"]
