"""Figures and the HTML report, drawn from stored results. Reads results; never measures."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from dnnbench.analysis.findings import Finding, findings
from dnnbench.analysis.tables import (bench_table, choose_setup, find_setup, models_table, of_task, require_results, tasks,
                                      warnings_table)
from dnnbench.core.version import __version__
from dnnbench.analysis.setups import compare, findings_per_setup
from dnnbench.report.figures import FigureOut, ReportData, render, render_setups


@dataclass
class ReportResult:
    path: Path  # the HTML file
    figures: list[FigureOut]  # with models of several tasks: each task's figures (keys "KEY-TASK" but classification)
    findings: list[Finding]
    setup: object = None
    files: list[str] = field(default_factory=list)  # every file written
    setup_figures: list[FigureOut] = field(default_factory=list)  # "Setups compared" (with two setups or more)
    comparison: object = None  # analysis.setups.Comparison, None with fewer than two setups
    setup_findings: dict = field(default_factory=dict)  # setup name -> findings over that setup's cells

    def to_dict(self) -> dict:
        return {"path": str(self.path), "files": self.files,
                "setup": self.setup.to_dict() if self.setup is not None else None,
                "figures": [{"key": f.key, "title": f.title, "no_data": f.no_data, "files": f.files} for f in self.figures],
                "findings": [f.to_dict() for f in self.findings],
                "setup_figures": [{"key": f.key, "title": f.title, "no_data": f.no_data, "files": f.files}
                                  for f in self.setup_figures],
                "setups_compared": self.comparison.to_dict() if self.comparison is not None else None}


def build(df: pd.DataFrame, environments: dict[str, dict], out_dir: str | Path, store_where: str = "the store",
          device: str | None = None, setup: str | None = None) -> ReportResult:
    """Write ``report.html`` (self-contained), ``figures/*.png|svg`` and ``findings.json`` into ``out_dir``; with two
    setups or more (machines, devices, runtimes, precisions, imported devices) also ``setups.json``, the comparison.

    The paper's figures and findings are drawn for ``setup`` (a name or fingerprint prefix: ``find_setup``), else
    for the setup with most cells (on ``device`` if given)."""
    from dnnbench.report.html import page

    require_results(df, store_where)
    chosen = find_setup(df, setup, device) if setup else choose_setup(df, device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    today = datetime.now(timezone.utc).date().isoformat()
    data = ReportData(df, chosen, bench_table(df, chosen), models_table(df), today)
    found = findings(df, chosen)
    task_list = tasks(df)
    if len(task_list) <= 1:
        figs = render(data, out / "figures")
    else:  # the paper's figures per task, each over that task's models and with its quality metric
        figs = []
        for task in task_list:
            sub = of_task(df, task)
            figs += render(ReportData(sub, chosen, bench_table(sub, chosen), models_table(sub), today, task),
                           out / "figures")
    cmp = compare(df)
    setup_figs = render_setups(cmp, data, out / "figures") if cmp is not None else []
    per_setup = findings_per_setup(df, cmp.setups) if cmp is not None else {}
    html = page(data, figs, found, environments, warnings_table(df), store_where, __version__,
                setups_part=(cmp, setup_figs, per_setup))
    path = out / "report.html"
    path.write_text(html, encoding="utf-8")
    (out / "findings.json").write_text(json.dumps([f.to_dict() for f in found], indent=2, default=str), encoding="utf-8")
    files = [str(path), str(out / "findings.json")] + [p for f in figs for p in f.files]
    if cmp is not None:
        doc = {**cmp.to_dict(), "findings": {n: [f.to_dict() for f in fs] for n, fs in per_setup.items()}}
        (out / "setups.json").write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
        files += [str(out / "setups.json")] + [p for f in setup_figs for p in f.files]
    return ReportResult(path, figs, found, chosen, files, setup_figs, cmp, per_setup)


__all__ = ["ReportResult", "build"]
