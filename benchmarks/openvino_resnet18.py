"""OpenVINO fp32 vs static int8 (NNCF) on torchvision resnet18: IR size, the int8 share of MACs, latency, preparation.

resnet18 with random weights from torch's own initialisers, given as a module object (so measured in this process):
speed does not depend on the weights, but the IR's size would were they dnnbench's cheap initialisation, whose
values repeat (every model dnnbench builds from a reference gets it), since OpenVINO's IR stores identical
constants once. 3x224x224, batch 1, the cell's own timing loop, eager fp32 alongside. ``--model REF`` benches a
reference instead (in worker subprocesses, cheap-initialised). Targets (issue 16): the
int8 IR (model.xml + model.bin) at most 30 % of the fp32 IR's bytes, and at least 90 % of the Convolution/
FullyConnected/MatMul MACs executing in int8 in the compiled model.

    python benchmarks/openvino_resnet18.py [--model REF] [--threads N] [--max-time 10]
"""

from __future__ import annotations

import argparse
import sys

import torch

import dnnbench.api as api
from dnnbench import runtimes



def resnet18() -> torch.nn.Module:
    """torchvision resnet18 with torch's default (per-value random) initialisation, seeded."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="a reference (default: resnet18 as a module object)")
    ap.add_argument("--threads", type=int, default=0, help="0: dnnbench's default")
    ap.add_argument("--max-time", type=float, default=10.0, help="seconds of timing per cell at most")
    opts = ap.parse_args()
    avail = runtimes.availability("openvino")
    if not avail.ok:
        print(f"openvino cannot run here: {avail.reason}: {avail.fix}")
        return 2
    common = dict(batch_sizes=[1], threads=opts.threads or None, max_time_per_cell=opts.max_time, sensors="none")
    cells = {}
    for runtime, precision in (("eager", "fp32"), ("openvino", "fp32"), ("openvino", "int8")):
        model = opts.model or resnet18()
        run = api.bench(model, runtime=runtime, precision=precision, in_process=not opts.model, **common)
        cell = run.cells[0]
        if cell.status != "ok":
            print(f"{runtime} {precision}: {cell.status}: {cell.message}")
            return 1
        cells[(runtime, precision)] = cell
    threads = cells[("eager", "fp32")].spec.threads
    print(f"{opts.model or 'resnet18 (torch default init)'}, batch 1, 3x224x224, {threads} threads, "
          f"openvino {avail.details['openvino_version'].split('-')[0]}")
    print(f"{'configuration':<16}{'median ms':>10}{'IQR ms':>8}{'samples':>8}{'artifact bytes':>16}"
          f"{'convert s':>10}{'quantize s':>11}{'compile s':>10}{'max|diff|':>11}{'top1':>6}")
    for (runtime, precision), cell in cells.items():
        lat, det, info, eq = cell.latency_s, cell.runtime_info.details, cell.runtime_info, cell.equivalence

        def fmt(key, d=det):
            v = d.get(key)
            return f"{v:.2f}" if isinstance(v, float) else "-"

        print(f"{runtime + ' ' + precision:<16}{1e3 * lat.median_s:>10.3f}{1e3 * lat.iqr_s:>8.3f}"
              f"{lat.n:>8}{info.artifact_bytes or 0:>16}{fmt('convert_s'):>10}{fmt('quantize_s'):>11}"
              f"{fmt('compile_s'):>10}{(f'{eq.max_abs_diff:.2e}' if eq and eq.max_abs_diff is not None else '-'):>11}"
              f"{(f'{eq.top1_agreement:.2f}' if eq and eq.top1_agreement is not None else '-'):>6}")
    fp32, int8 = cells[("openvino", "fp32")], cells[("openvino", "int8")]
    ratio = int8.runtime_info.artifact_bytes / fp32.runtime_info.artifact_bytes
    frac = int8.runtime_info.details.get("int8_macs_fraction")
    speedup = fp32.latency_s.median_s / int8.latency_s.median_s
    print(f"int8 IR / fp32 IR: {100 * ratio:.1f} % (target <= 30 %): {'ok' if ratio <= 0.30 else 'MISSED'}")
    print(f"int8_macs_fraction: {frac if isinstance(frac, str) else f'{frac:.4f}'} (target >= 0.9): "
          f"{'ok' if isinstance(frac, float) and frac >= 0.9 else 'MISSED'}")
    print(f"int8 speed-up over openvino fp32: {speedup:.2f}x; openvino fp32 over eager fp32: "
          f"{cells[('eager', 'fp32')].latency_s.median_s / fp32.latency_s.median_s:.2f}x")
    print(f"int8 float layers: {int8.runtime_info.details.get('float_mac_layers', [])}")
    for cell in (fp32, int8):
        print(f"{cell.spec.precision} artifact: {cell.runtime_info.artifact_note}")
    print(f"int8 execution precisions (share of MACs): {int8.runtime_info.details.get('macs_by_runtime_precision')}")
    return 0 if ratio <= 0.30 and isinstance(frac, float) and frac >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
