"""Bench results: the only CLI module that reads bench runs and cells (latency, memory, energy, runtime_info),
so a change to those records is adapted here alone."""

from __future__ import annotations

from rich.table import Table

from dnnbench.cli.output import err, out
from dnnbench.core import units as u


def to_json(runs):
    """One run as its dict — its records and, beside each, the metric view derived from it; several runs
    (runtimes or precisions compared) as a list."""
    from dnnbench.core.record import CellRecord
    from dnnbench.core.view import metrics

    def one(run):
        d = run.to_dict()
        d["metrics"] = [metrics(CellRecord.from_dict(r)).as_dict() for r in d["records"]]
        return d

    return one(runs[0]) if len(runs) == 1 else [one(r) for r in runs]


def any_ok(runs) -> bool:
    """Whether any cell of ``runs`` measured (the command exits 1 when none did)."""
    return any(c.status == "ok" for run in runs for c in run.cells)


def runs(items) -> None:
    """Each run's tables, then the side-by-side comparison when several runtimes or precisions ran."""
    for run in items:
        bench(run)
    if len(items) > 1:
        runtime_comparison(items)


class progress:
    """A rich progress bar per cell on stderr (only on a terminal), fed by api.bench's events."""

    def __init__(self, max_time: float):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.max_time = max_time
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[info]}"), console=err, transient=False,
                            disable=not err.is_terminal)
        self.tasks: dict[int, int] = {}

    def __enter__(self):
        self.bar.__enter__()
        return self.on_event

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def on_event(self, kind, spec, payload) -> None:
        label = f"{spec.model.removeprefix('torchvision:')} batch {spec.batch_size}"
        if not spec.is_reference:
            label += f" ({spec.runtime} {spec.precision})"
        if kind == "start":
            self.tasks[spec.batch_size] = self.bar.add_task(label, total=self.max_time, info="starting")
            return
        task = self.tasks.get(spec.batch_size)
        if kind == "progress" and task is not None:
            phase, n, elapsed, rel = payload
            info = phase + (f", {n} samples" if n else "") + (f", CI +/-{100 * rel:.1f} %" if rel is not None else "")
            self.bar.update(task, completed=min(elapsed, self.max_time), info=info)
        elif kind == "done":
            cell = payload
            if task is None:  # a skipped cell never started
                task = self.bar.add_task(label, total=self.max_time, info="")
            st = cell.latency_s
            info = cell.status + (f", median {u.seconds(st.median_s)}, {st.n} samples" if st else "")
            self.bar.update(task, completed=self.max_time, info=info)


def power(run) -> None:
    """Power per cell, or one line saying why it is unavailable — never a 0."""
    measured = [c for c in run.cells if c.power is not None and c.power.status != "unavailable"]
    if not measured:
        reasons = {c.power.reason for c in run.cells if c.power is not None and c.power.reason}
        out.print("power: unavailable: " + ("; ".join(sorted(reasons)) or "no cell reached the power step"),
                  soft_wrap=True)
        return
    t = Table(title="power and energy per item (after timing; idle measured before and subtracted)",
              title_justify="left")
    for col in ("batch", "sensor", "status", "power", "idle", "energy/item", "above idle/item", "window", "domains"):
        t.add_column(col, justify="left" if col in ("sensor", "status", "domains") else "right")
    for c in measured:
        e = c.power
        t.add_row(str(c.batch_size), e.sensor, e.status, u.si(e.power_w, "W"), u.si(e.idle_power_w, "W"),
                  u.si(e.energy_per_item_j, "J"), u.si(e.energy_per_item_above_idle_j, "J"),
                  u.seconds(e.window_s) if e.window_s else "-", ", ".join(e.domains) or e.scope)
    out.print(t)


def bench(run) -> None:
    on_gpu = run.device.startswith("cuda")
    env = run.environment
    spec = run.cells[0].spec if run.cells else None
    task = spec.task if spec is not None else "classification"
    unit = spec.item_unit if spec is not None else "item"
    what = "" if task == "classification" else f" ({task.replace('_', ' ')}: an item is one {unit})"
    t = Table(title=f"{run.model}{what} on {run.device}, {run.threads} threads, {run.runtime} {run.precision} — latency "
                    "per batch (median and 95 % CI), memory measured per cell", title_justify="left")
    per, rate = ("per item", "items/s") if task == "classification" else (f"per {unit}", f"{unit}s/s")
    cols = ["batch", "status", "median", "95 % CI", per, rate, "p90", "p99", "cold start", "n"]
    cols += ["CUDA peak alloc.", "CUDA peak reserved"] if on_gpu else ["peak RSS", "RSS above base"]
    cols += ["static act.+weights", "GFLOP/s", "% of peak"]
    for c in cols:
        t.add_column(c, justify="left" if c == "status" else "right")
    for c in run.cells:
        st = c.latency_s
        static = u.iec_bytes(c.static.activation_peak_bytes + c.static.weight_bytes) if c.static else "-"
        if st is None:
            t.add_row(str(c.batch_size), c.status, *["-"] * (len(cols) - 5), static, "-", "-", style="dim")
            continue
        ci = f"+/-{100 * st.ci_rel_halfwidth:.1f} %" if st.ci_rel_halfwidth is not None else "too few samples"
        mem = ([u.iec_bytes(c.cuda_peak_allocated_bytes), u.iec_bytes(c.cuda_peak_reserved_bytes)] if on_gpu
               else [u.iec_bytes(c.peak_rss_bytes), u.iec_bytes(c.rss_above_baseline_bytes)])
        roof = c.roofline
        t.add_row(str(c.batch_size), c.status + (" !" if c.warnings else ""), u.seconds(st.median_s), ci,
                  u.seconds(c.latency_per_item_s), f"{c.throughput_items_per_s:,.1f}",
                  u.seconds(st.p90_s) if st.p90_s is not None else "too few samples",
                  u.seconds(st.p99_s) if st.p99_s is not None else "too few samples",
                  u.seconds(c.cold_start_s), str(st.n), *mem, static,
                  f"{roof.achieved_flops_per_s / 1e9:.1f}" if roof and roof.achieved_flops_per_s is not None else "-",
                  u.pct(roof.fraction_of_peak, 2) if roof and roof.fraction_of_peak is not None else "-")
    out.print(t)
    power(run)
    runtime_lines(run)
    for c in run.cells:
        if c.status != "ok":
            out.print(f"batch {c.batch_size}: {c.status}: {c.message}")
        for w in c.warnings:
            out.print(f"batch {c.batch_size}: warning: {w}")
    for fit in (run.memory_fit, run.activation_fit):
        if fit is None:
            continue
        line = (f"memory ({fit.quantity.removesuffix('_bytes').replace('_', ' ')}): {u.iec_bytes(fit.floor_bytes)} + "
                f"{u.iec_bytes(fit.slope_bytes_per_item)} x batch (least squares over {fit.n} sizes"
                + (f", r2 {fit.r2:.3f}" if fit.r2 is not None else "") + ("" if fit.monotonic else ", NOT monotonic") + ")")
        if fit.static_slope_bytes_per_item is not None:
            line += (f"; static estimate {u.iec_bytes(fit.static_floor_bytes)} + "
                     f"{u.iec_bytes(fit.static_slope_bytes_per_item)} x batch"
                     + (f", measured/static slope {fit.slope_ratio:.2f}" if fit.slope_ratio else ""))
        out.print(line)
    if run.machine_peak is not None:
        p = run.machine_peak
        out.print(f"peak: {p.peak_flops_per_s / 1e9:.1f} GFLOP/s measured by `dnnbench machine` ({p.best_probe} probe, "
                  f"{p.measured_at})")
    else:
        out.print(f"% of peak: {run.unavailable.get('machine_peak', 'unavailable')}")
    gpu = f", {env.gpu_name}, driver {env.gpu_driver}" if on_gpu and env.gpu_name else ""
    out.print(f"machine {env.fingerprint}: {env.cpu_model}, {env.physical_cores} physical / {env.logical_cores} "
              f"logical cores{gpu}; torch {env.torch_version}; load {env.load_avg}; dnnbench {env.tool_version}, "
              f"{env.timestamp}")


def runtime_lines(run) -> None:
    """The runtime's preparation and the equivalence check of each cell (none for eager fp32, the reference)."""
    ok = [c for c in run.cells if c.status == "ok" and c.runtime_info is not None]
    if not ok:
        return
    info = ok[0].runtime_info
    keys = ("exporter", "batch_axis", "providers", "conversion", "backend", "graphs", "graph_breaks", "vec_isa")
    shown = {k: info.details[k] for k in keys if k in info.details}
    if shown or info.notes:
        out.print(f"{run.runtime} {run.precision}: " + "; ".join([f"{k} {v}" for k, v in shown.items()] + info.notes),
                  markup=False)
    for c in ok:
        eq = c.equivalence
        line = f"batch {c.batch_size}: prepared in {u.seconds(c.prepare_s)}"
        ri = c.runtime_info
        if ri.artifact_bytes is not None:
            line += f"; artifact {u.iec_bytes(ri.artifact_bytes)} ({ri.artifact_bytes} bytes: {ri.artifact_note})"
        elif ri.artifact_note:
            line += f"; artifact size {ri.artifact_note}"
        if eq is not None and eq.compared:
            line += f"; compared {eq.compared}"
        if eq is not None:
            diff = f"{eq.max_abs_diff:.3g}" if eq.max_abs_diff is not None else eq.unavailable.get("max_abs_diff", "-")
            agree = (f"{100 * eq.top1_agreement:.1f} % of {eq.rows} rows" if eq.top1_agreement is not None
                     else eq.unavailable.get("top1_agreement", "-"))
            line += (f"; vs {eq.reference} on the same input: max |diff| {diff} (largest |output| "
                     f"{eq.reference_max_abs:.3g}), top-1 agreement {agree}" if eq.reference_max_abs is not None
                     else f"; vs {eq.reference}: max |diff| {diff}, top-1 agreement {agree}")
        out.print(line, markup=False)


def runtime_comparison(runs) -> None:
    """One table across runtimes and precisions: time, memory, cold start, preparation, equivalence."""
    t = Table(title=f"{runs[0].model} on {runs[0].device}, {runs[0].threads} threads — runtimes and precisions "
                    "side by side", title_justify="left")
    for c in ("batch", "runtime", "precision", "status", "median", "per item", "speed-up", "cold start",
              "prepare", "peak RSS", "RSS above base", "artifact", "max |diff|", "top-1 agree"):
        t.add_column(c, justify="left" if c in ("runtime", "precision", "status") else "right")
    # the reference: eager fp32, or for an ONNX file its fp32 session (the runs without an equivalence check)
    ref_run = next((r for r in runs if (r.runtime, r.precision) == ("eager", "fp32")), None) or next(
        (r for r in runs if r.precision == "fp32" and not any(c.equivalence for c in r.cells)), None)
    ref = {c.batch_size: c for c in (ref_run.cells if ref_run else []) if c.status == "ok"}
    sizes = sorted({c.batch_size for r in runs for c in r.cells})
    for b in sizes:
        for r in runs:
            c = next((x for x in r.cells if x.batch_size == b), None)
            if c is None:
                continue
            st = c.latency_s
            base = ref.get(b)
            speed = (f"{base.latency_s.median_s / st.median_s:.2f}x" if st and base and base.latency_s
                     and st.median_s > 0 else "-")
            eq = c.equivalence
            t.add_row(str(b), r.runtime, r.precision, c.status, u.seconds(st.median_s) if st else "-",
                      u.seconds(c.latency_per_item_s), speed if c is not base else "1 (reference)",
                      u.seconds(c.cold_start_s), u.seconds(c.prepare_s), u.iec_bytes(c.peak_rss_bytes),
                      u.iec_bytes(c.rss_above_baseline_bytes),
                      u.iec_bytes(c.runtime_info.artifact_bytes if c.runtime_info else None),
                      f"{eq.max_abs_diff:.3g}" if eq and eq.max_abs_diff is not None else "-",
                      f"{100 * eq.top1_agreement:.1f} %" if eq and eq.top1_agreement is not None else "-")
    out.print(t)
    name = f"{ref_run.runtime} {ref_run.precision}" if ref_run else "the reference"
    out.print(f"speed-up: {name}'s median time over this one's (above 1: faster). max |diff| and top-1 agreement "
              f"compare the outputs with {name}'s on the same input. artifact: the deployable file's size "
              f"(eager/compile: the state dict as torch.save writes it; onnxruntime: the .onnx file it runs; openvino: "
              f"the IR .xml + .bin; executorch: the .pte program).")
