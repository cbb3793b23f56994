"""Accuracy under a runtime and precision: each configuration runs on the very batches eager fp32 is scored on.

A configuration is prepared once (``runtimes.prepare``) on the first evaluation batch, at the evaluation's batch
size: ONNX Runtime, ExecuTorch and OpenVINO sessions have that batch size fixed, so every batch is fed at it — the
last one (and one that lost corrupt images) is padded by repeating its last image, and the padded rows are dropped
before scoring. Each batch then goes through ``Prepared.run``; a runtime without it (``run`` None), or a
preparation or run that fails, makes that configuration's accuracy unavailable with why — never a figure.

Per image, top-1 correctness of the configuration and of eager fp32 and whether their top-1 classes agree are
kept (the raw samples); the paired statistics (McNemar's exact test, Newcombe's interval of the difference,
agreement) are derived from them by ``core.accuracy.paired_comparison``.

Static int8 calibrates on images that are not evaluated: ``--calibration DIR``, else images of ``--data`` that the
``--limit`` subset left out (linked into a temporary folder). When every image is evaluated and no folder is
given, static int8 is unavailable (calibrating on evaluated images would score the quantizer on what it saw).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace

import torch

from dnnbench.core.accuracy import Accuracy, ConfigUnavailable, hits_string, paired_comparison, wilson_interval
from dnnbench.core.errors import DnnbenchError
from dnnbench.core.measurements import CellSpec

REFERENCE = ("eager", "fp32")
DEFAULT_CALIBRATION_IMAGES = 64


@dataclass
class Calibration:
    """Where static int8 calibrates: a folder (``folder``, ``count`` images of it, ``source`` said in the record),
    or why it cannot (``unavailable``). ``temporary``: a folder of links made here, removed when done."""

    folder: str = ""
    count: int = 0
    source: str = ""
    unavailable: str = ""
    temporary: bool = False

    def close(self) -> None:
        if self.temporary and self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = ""


def calibration_for(evaluated: list[str], listed: list[str], folder: str | None, count: int, seed: int) -> Calibration:
    """The calibration images of a static int8 configuration (see the module docstring).

    ``evaluated``: the files scored; ``listed``: every image file of ``--data``; ``folder``: ``--calibration``;
    ``count``: how many images (0: ``DEFAULT_CALIBRATION_IMAGES``)."""
    n = count or DEFAULT_CALIBRATION_IMAGES
    if folder:
        return Calibration(os.path.abspath(folder), count, f"--calibration {folder}")
    scored = set(evaluated)
    held_out = sorted(p for p in listed if p not in scored)
    if not held_out:
        return Calibration(unavailable=(
            f"static int8 needs calibration images that are not evaluated: all {len(evaluated)} images of --data are "
            "evaluated; pass --calibration DIR (images not in --data), or --limit N below the folder's count so that "
            "the images left out calibrate"))
    chosen = sorted(random.Random(seed).sample(held_out, min(n, len(held_out))))
    tmp = tempfile.mkdtemp(prefix="dnnbench-calibration-")
    for i, path in enumerate(chosen):
        link = os.path.join(tmp, f"{i:05d}_{os.path.basename(path)}")
        try:
            os.symlink(os.path.abspath(path), link)
        except OSError:  # no symlinks (some file systems): a copy
            shutil.copy(path, link)
    return Calibration(tmp, len(chosen), f"{len(chosen)} images of --data left out of the evaluated subset "
                                         f"(of {len(held_out)} left out; seed {seed}); none of them is scored",
                       temporary=True)


@dataclass
class _Run:
    """One configuration's state over the evaluation."""

    runtime: str
    precision: str
    prepared: object = None
    hits1: list[bool] = field(default_factory=list)
    top5: int = 0
    agree: list[bool] = field(default_factory=list)
    forward_s: float = 0.0
    rows_run: int = 0
    unavailable: str = ""
    notes: list[str] = field(default_factory=list)
    calibration: str = ""
    prepare_s: float | None = None


class ConfigEvaluator:
    """Feeds every evaluation batch to each (runtime, precision) besides the reference; see the module docstring.

    ``batch(x, y, reference_logits)`` per decoded batch (CPU tensors, ``x`` at most ``batch_size`` images),
    then ``results(reference_record)`` gives one record per configuration (or why it has none); ``close()``
    removes temporary files.
    """

    def __init__(self, loaded, module: torch.nn.Module, configs: list[tuple[str, str]], batch_size: int, device: str,
                 k: int, calibration: Calibration | None = None):
        self.loaded, self.module, self.batch_size, self.device, self.k = loaded, module, batch_size, device, k
        self.calibration = calibration or Calibration()
        self.runs = [_Run(rt, prec) for rt, prec in configs if (rt, prec) != REFERENCE]
        self.batches = 0

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if n == self.batch_size:
            return x
        return torch.cat([x, x[-1:].expand(self.batch_size - n, *x.shape[1:])], 0)

    def _prepare(self, run: _Run, x: torch.Tensor) -> None:
        from dnnbench import runtimes

        cal = self.calibration
        if run.precision == "int8" and cal.unavailable:
            run.unavailable = f"unavailable: {cal.unavailable}"
            return
        int8 = run.precision == "int8"
        spec = CellSpec(self.loaded.ref, self.batch_size, self.device, torch.get_num_threads(), runtime=run.runtime,
                        precision=run.precision, task=self.loaded.task, calibration=cal.folder if int8 else "",
                        calibration_count=cal.count if int8 else 0)
        try:
            prepared = runtimes.prepare(spec, self.module, (x.to(self.device),), {}, torch.device(self.device),
                                        False, self.loaded)
        except DnnbenchError as exc:
            run.unavailable = f"unavailable: preparing {run.runtime} {run.precision} failed: {exc.one_line()}"
            return
        except Exception as exc:  # a converter's own failure: said, never a traceback
            run.unavailable = (f"unavailable: preparing {run.runtime} {run.precision} failed "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})")
            return
        run.prepared, run.prepare_s = prepared, prepared.prepare_s
        run.notes.extend(prepared.notes)
        run.notes.extend(str(w) for w in prepared.warnings)
        if int8:
            used = str(prepared.details.get("calibration") or "")
            run.calibration = used or cal.source
            if cal.source and used and cal.folder and cal.folder not in used:
                run.notes.append(f"calibration: offered {cal.source}, but the runtime calibrated on: {used}")
            elif cal.source:
                run.notes.append(f"calibration: {cal.source}")
        if prepared.run is None:
            run.unavailable = (f"unavailable: the {run.runtime} runtime cannot run other inputs once prepared "
                               f"(its Prepared.run is None), so its {run.precision} accuracy cannot be measured here")
            self._close(run)

    def batch(self, x: torch.Tensor, y: torch.Tensor, reference_logits: torch.Tensor) -> None:
        n = x.shape[0]
        xp = self._pad(x.cpu())
        ref_pred = reference_logits.float().argmax(1).cpu()
        y = y.cpu()
        for run in self.runs:
            if run.unavailable:
                continue
            if run.prepared is None:
                self._prepare(run, xp)
                if run.unavailable:
                    continue
            try:
                t0 = time.perf_counter()
                outs = run.prepared.run((xp.to(self.device),), {})
                run.forward_s += time.perf_counter() - t0
                logits = outs[0] if isinstance(outs, (list, tuple)) else outs
                if logits.dim() != 2 or logits.shape[0] != self.batch_size:
                    raise ValueError(f"its first output has shape {list(logits.shape)}, not "
                                     f"[{self.batch_size}, classes]")
                logits = logits[:n].float()
            except Exception as exc:
                msg = exc.one_line() if isinstance(exc, DnnbenchError) else \
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                run.unavailable = (f"unavailable: {run.runtime} {run.precision} failed on evaluation batch "
                                   f"{self.batches + 1} ({msg})")
                self._close(run)
                continue
            top = logits.topk(self.k, dim=1).indices
            hits = top.eq(y.unsqueeze(1))
            run.hits1.extend(hits[:, 0].tolist())
            run.top5 += int(hits.any(dim=1).sum())
            run.agree.extend(top[:, 0].eq(ref_pred).tolist())
            run.rows_run += self.batch_size
        self.batches += 1

    def results(self, reference: Accuracy) -> list[Accuracy | ConfigUnavailable]:
        """One record per configuration, paired with ``reference`` (eager fp32 on the same images), or why not."""
        out: list[Accuracy | ConfigUnavailable] = []
        ref_hits = [h == "1" for h in reference.top1_hits]
        for run in self.runs:
            if not run.unavailable and len(run.hits1) != len(ref_hits):
                run.unavailable = (f"unavailable: {run.runtime} {run.precision} scored {len(run.hits1)} images and "
                                   f"eager fp32 {len(ref_hits)}: they cannot be paired")
            if run.unavailable:
                out.append(ConfigUnavailable(reference.model, run.runtime, run.precision, run.unavailable))
                continue
            n = len(run.hits1)
            top1 = sum(run.hits1)
            paired = paired_comparison(ref_hits, run.hits1, run.agree)
            t1_lo, t1_hi = wilson_interval(top1, n)
            t5_lo, t5_hi = wilson_interval(run.top5, n)
            notes = [*reference.notes, *run.notes,
                     f"{run.runtime} {run.precision} ran the same {n} images as eager fp32, in batches of "
                     f"{self.batch_size} (a short batch padded by repeating its last image; padded rows not scored)"]
            out.append(replace(
                reference, runtime=run.runtime, precision=run.precision, top1=top1 / n, top5=run.top5 / n,
                top1_correct=top1, top5_correct=run.top5, top1_ci_low=t1_lo, top1_ci_high=t1_hi,
                top5_ci_low=t5_lo, top5_ci_high=t5_hi, top1_hits=hits_string(run.hits1), forward_s=run.forward_s,
                forward_per_image_s=run.forward_s / n, calibration=run.calibration, paired=paired, notes=notes))
            self._close(run)
        return out

    def _close(self, run: _Run) -> None:
        if run.prepared is not None:
            run.prepared.close()
            run.prepared = None

    def close(self) -> None:
        for run in self.runs:
            self._close(run)
        self.calibration.close()
