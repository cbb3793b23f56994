"""ExecuTorch (XNNPACK) fp32 vs static int8 (PT2E) on torchvision resnet18: .pte size, int8 and delegated shares of
MACs, export/quantize/lower seconds, latency.

resnet18 with every weight drawn on its own (speed does not depend on the values; the .pte's size would, were
whole tensors equal: ExecuTorch stores identical constants once), 3x224x224, batch 1, through the real cell path
(worker subprocesses, the cell's own timing loop), eager fp32 alongside. Targets (issue 16): the int8 .pte at most
30 % of the fp32 .pte's bytes, and at least 90 % of the convolution/linear MACs running in int8 inside XNNPACK
partitions.

    python benchmarks/executorch_resnet18.py [--model REF] [--threads N] [--max-time 10]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import dnnbench.api as api
from dnnbench import runtimes

HERE = os.path.abspath(__file__)


def resnet18():
    """torchvision resnet18, every weight drawn on its own (torch.randn at the initialiser's std), seeded."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:  # conv and linear weights; BatchNorm's ones and zeros stay
                p.copy_(torch.randn(p.shape, generator=gen) * float(p.detach().std()))
    return model, torch.randn(1, 3, 224, 224)


def _num(v, spec: str = ".2f") -> str:
    return format(v, spec) if isinstance(v, float) else ("-" if v is None else str(v))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=f"python:{HERE}:resnet18")
    ap.add_argument("--threads", type=int, default=0, help="0: dnnbench's default")
    ap.add_argument("--max-time", type=float, default=10.0, help="seconds of timing per cell at most")
    opts = ap.parse_args()
    avail = runtimes.availability("executorch")
    if not avail.ok:
        print(f"executorch cannot run here: {avail.reason}: {avail.fix}")
        return 2
    common = dict(batch_sizes=[1], threads=opts.threads or None, max_time_per_cell=opts.max_time, sensors="none")
    cells = {}
    for runtime, precision in (("eager", "fp32"), ("executorch", "fp32"), ("executorch", "int8")):
        run = api.bench(opts.model, runtime=runtime, precision=precision, **common)
        cell = run.cells[0]
        if cell.status != "ok":
            print(f"{runtime} {precision}: {cell.status}: {cell.message}")
            return 1
        cells[(runtime, precision)] = cell
    print(f"{opts.model.rsplit(':', 1)[-1]}, batch 1, 3x224x224, {cells[('eager', 'fp32')].spec.threads} threads, "
          f"executorch {avail.details['executorch_version']}")
    print(f"{'configuration':<16}{'median ms':>10}{'IQR ms':>8}{'samples':>8}{'artifact bytes':>16}"
          f"{'export s':>9}{'quantize s':>11}{'lower s':>8}{'deleg ops':>10}{'deleg MACs':>11}{'int8 MACs':>10}"
          f"{'max|diff|':>11}{'top1':>6}")
    for (runtime, precision), cell in cells.items():
        lat, det, info, eq = cell.latency_s, cell.runtime_info.details, cell.runtime_info, cell.equivalence
        print(f"{runtime + ' ' + precision:<16}{1e3 * lat.median_s:>10.3f}{1e3 * lat.iqr_s:>8.3f}"
              f"{lat.n:>8}{_num(info.artifact_bytes):>16}{_num(det.get('export_s')):>9}"
              f"{_num(det.get('quantize_s')):>11}{_num(det.get('lower_s')):>8}"
              f"{_num(det.get('delegated_ops_fraction'), '.3f'):>10}"
              f"{_num(det.get('delegated_macs_fraction'), '.3f'):>11}"
              f"{_num(det.get('int8_macs_fraction'), '.3f'):>10}"
              f"{(f'{eq.max_abs_diff:.2e}' if eq and eq.max_abs_diff is not None else '-'):>11}"
              f"{(f'{eq.top1_agreement:.2f}' if eq and eq.top1_agreement is not None else '-'):>6}")
    fp32, int8 = cells[("executorch", "fp32")], cells[("executorch", "int8")]
    ratio = int8.runtime_info.artifact_bytes / fp32.runtime_info.artifact_bytes
    frac = int8.runtime_info.details.get("int8_macs_fraction")
    ok_ratio, ok_frac = ratio <= 0.30, isinstance(frac, float) and frac >= 0.9
    print(f"int8 .pte / fp32 .pte: {100 * ratio:.1f} % (target <= 30 %): {'ok' if ok_ratio else 'MISSED'}")
    print(f"int8_macs_fraction: {_num(frac, '.4f')} (target >= 0.9): {'ok' if ok_frac else 'MISSED'}")
    for cell in (fp32, int8):
        det = cell.runtime_info.details
        prep = sum(det.get(k, 0.0) for k in ("export_s", "quantize_s", "lower_s"))
        print(f"{cell.spec.precision}: export+quantize+lower {prep:.2f} s "
              f"(prepare_s {cell.runtime_info.prepare_s:.2f}); "
              f"{det.get('delegated_partitions')} XNNPACK partition(s), portable ops {det.get('portable_ops')}; "
              f"xnnpack_threads {det.get('xnnpack_threads')}; repeated constant bytes "
              f"{det.get('repeated_constant_bytes')} of {det.get('constant_bytes')}; "
              f"artifact: {cell.runtime_info.artifact_note}")
    eager = cells[("eager", "fp32")].latency_s.median_s
    print(f"int8 speed-up over executorch fp32: {fp32.latency_s.median_s / int8.latency_s.median_s:.2f}x; "
          f"executorch fp32 over eager fp32: {eager / fp32.latency_s.median_s:.2f}x")
    return 0 if ok_ratio and ok_frac else 1


if __name__ == "__main__":
    sys.exit(main())
