"""What this machine offers: runtimes, power sensors, measured peaks."""

from __future__ import annotations

from rich.table import Table

from dnnbench.cli.output import out
from dnnbench.core import units as u


def runtimes(rows: list[dict], device: str) -> None:
    t = Table(title=f"runtimes on {device}", title_justify="left")
    for c in ("runtime", "available", "fp32", "fp16", "bf16", "int8", "int8-dynamic", "why not / details"):
        t.add_column(c)
    for r in rows:
        marks = [("yes" if v["native"] else "emulated") if v["runs"] else "no" for v in r["precisions"].values()]
        info = (f"{r['reason']}. Fix: {r['fix']}" if not r["available"]
                else ", ".join(f"{k} {v}" for k, v in r["details"].items() if k != "providers"))
        t.add_row(r["name"], "yes" if r["available"] else "no", *marks, info)
    out.print(t)
    notes: dict[tuple[str, str], list[str]] = {}  # (precision, note) -> runtimes it applies to
    for r in rows:
        for p, v in r["precisions"].items():
            if v["note"] and r["available"]:
                notes.setdefault((p, v["note"]), []).append(r["name"])
    for (p, note), names in notes.items():
        out.print(f"{p} ({', '.join(names)}): {note}", markup=False)


def sensors(infos) -> None:
    from rich.markup import escape  # reasons hold text like dnnbench[nvml] that is not markup

    t = Table(title="power sensors", title_justify="left")
    for c in ("sensor", "status", "covers", "how", "why not / fix"):
        t.add_column(c, overflow="fold")
    for i in infos:
        if i.available:
            covers = i.scope + (f" [{', '.join(i.domains)}]" if i.domains else "")
            how = i.method
            if not ("every" in how and i.update_period_s == i.sampling_period_s):
                how += f"; updates every {i.update_period_s:g} s"
            row = (i.name, "available", covers, how, "; ".join(i.notes))
        else:
            row = (i.name, "unavailable", i.scope, "-", i.reason or "")
        t.add_row(*map(escape, row))
    out.print(t)
    if not any(i.available for i in infos):
        out.print("no power sensor works here: bench reports power and energy as unavailable, never 0. "
                  "Fix a reason above, or record the machine with an external meter (--sensors meter:FILE).")


def machine(peaks, cache_file) -> None:
    for p in peaks:
        t = Table(title=f"{p.device}, {p.threads} threads — machine {p.fingerprint}, measured {p.measured_at}",
                  title_justify="left")
        for c in ("probe", "work per call", "best time", "rate"):
            t.add_column(c, justify="left" if c == "probe" else "right")
        for pr in p.probes:
            if pr["kind"] == "bandwidth":
                t.add_row(pr["name"], u.iec_bytes(pr["bytes"]), u.seconds(pr["best_s"]),
                          f"{pr['bytes_per_s'] / 1e9:.1f} GB/s")
            else:
                t.add_row(pr["name"], u.si(pr["flops"], "FLOP"), u.seconds(pr["best_s"]),
                          f"{pr['flops_per_s'] / 1e9:.1f} GFLOP/s")
        out.print(t)
        bw = f"{p.bandwidth_bytes_per_s / 1e9:.1f} GB/s" if p.bandwidth_bytes_per_s else "unavailable"
        out.print(f"peak fp32: {p.peak_flops_per_s / 1e9:.1f} GFLOP/s ({p.best_probe}); GEMM "
                  f"{p.gemm_flops_per_s / 1e9:.1f}, convolution {p.conv_flops_per_s / 1e9:.1f} GFLOP/s; copy bandwidth {bw}")
    out.print(peaks[0].unavailable.get("cache") or f"cache: {cache_file}")  # a peak that could not be cached says why
