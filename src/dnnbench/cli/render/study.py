"""The study's progress and summary, and the report's findings on stderr."""

from __future__ import annotations

from rich.text import Text

from dnnbench.cli.output import err, out
from dnnbench.core import units as u


class progress:
    """The study's bar and per-cell lines on stderr, fed by runner.study's events; a context manager that yields
    ``on_event(kind, data)``."""

    def __init__(self):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=False)
        self.task = None

    def __enter__(self):
        return self.on_event

    def __exit__(self, *exc):
        if self.task is not None:  # stopping a bar that never started prints an empty line
            self.bar.stop()
        return False

    def on_event(self, kind, data) -> None:
        if kind == "open":
            err.print(f"store: {data['store']}")
            for label, why in data["unavailable"]:
                err.print(f"unavailable: {label}: {why}")
        elif kind == "plan":
            if data["skipped"]:
                err.print(f"{data['skipped']} cells already in the store for this configuration and machine: skipped"
                          " (--force re-measures them)")
            self.task = self.bar.add_task("study", total=data["todo"])
            self.bar.start()
        elif kind == "start" and self.task is not None:
            p = data["plan"]
            conf = (p.config.get("runtime", "eager"), p.config.get("precision", "fp32"))
            extra = "" if conf == ("eager", "fp32") or p.group == "profile" else f" {conf[0]} {conf[1]}"
            self.bar.update(self.task, description=f"{p.label} b={p.batch_size} {p.group}{extra}")
        elif kind == "claimed":
            p = data["plan"]
            err.print(f"{p.label} b={p.batch_size} {p.group}: being measured by {data['holder']}: skipped here")
            if self.task is not None:
                self.bar.advance(self.task)
        elif kind == "done" and self.task is not None:
            self.bar.advance(self.task)
            row = data["row"]
            if row.status != "ok":
                err.print(f"{row.model_ref} batch {row.batch_size} {row.metric_group}: {row.status}: {row.message}")


def summary(s, budget) -> None:
    statuses = ", ".join(f"{v} {k}" for k, v in sorted(s.statuses.items())) or "none"
    out.print(f"study: {s.measured} cells measured ({statuses}), {s.skipped_existing} already stored, "
              f"{s.left} left, in {u.seconds(s.wall_s)}; store: {s.store}")
    if s.claimed_elsewhere:
        out.print(f"{s.claimed_elsewhere} cells were being measured by another study at the same time: skipped "
                  "here (run again once it is done to see them stored)")
    if s.stopped == "budget":
        out.print(f"stopped: the budget {budget} is spent; {s.left} cells left. Run the same command again to resume.")


def report(res) -> None:
    """The available findings and which figures have no data, on stderr (stdout holds the report's path)."""
    for f in res.findings:
        if f.available:
            err.print(Text.assemble((f.title, "bold"), f": {f.text}"), soft_wrap=True)
    missing = [f.title for f in res.figures if f.no_data]
    if missing:
        err.print(f"{len(missing)} of {len(res.figures)} figures have no data (each says why): {'; '.join(missing)}",
                  soft_wrap=True)
