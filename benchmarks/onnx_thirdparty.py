"""Third-party ONNX files counted and run: params (and a direct count of the stored tensors), MACs, what is
uncounted, profile wall time, and ONNX Runtime latency at batch 1 through ``dnnbench.bench``.

    .venv/bin/python benchmarks/onnx_thirdparty.py [--download] [--no-bench] [--max-time S]

Files: the ONNX model-zoo exports shipped inside the ``onnx`` wheel, and the models inside the PyPI wheels of
``rapidocr-onnxruntime`` 1.4.4 and ``ddddocr`` 1.6.1 when they are in the cache folder (``--download`` fetches
them with pip; see tests/test_onnx_thirdparty.py, whose helpers this uses).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import test_onnx_thirdparty as tp  # noqa: E402

import dnnbench  # noqa: E402

# the input sizes the programs that ship these files feed them (RapidOCR: rec 48 x 320, cls 48 x 192; det 640)
SIZES = {"ch_PP-OCRv4_det_infer": (640, 640), "ch_PP-OCRv4_rec_infer": (48, 320),
         "ch_ppocr_mobile_v2.0_cls_infer": (48, 192)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--download", action="store_true", help=f"pip download the wheels into {tp.CACHE} first")
    ap.add_argument("--no-bench", action="store_true", help="count only; do not time ONNX Runtime")
    ap.add_argument("--max-time", type=float, default=3.0, help="bench time cap per file in seconds")
    args = ap.parse_args()
    if args.download:
        tp.download()
    files = {**tp.light_files(), **tp.wheel_files()}
    if not tp.wheel_files():
        print(f"(the PyPI wheels are not in {tp.CACHE}: only the onnx package's own files; get them with --download)")
    head = f"{'file':34} {'IR':>2} {'opset':>5} {'params':>12} {'direct':>12} {'weights MB':>10} {'file MB':>8} " \
           f"{'GMACs':>8} {'profile s':>9} {'ORT b1 ms':>9}  uncounted / notes"
    print(head)
    print("-" * len(head))
    total = 0.0
    mismatches = 0
    for stem, path in files.items():
        model = tp.onnx.load(path, load_external_data=False)
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), "?")
        size = SIZES.get(stem)
        t0 = time.perf_counter()
        try:
            p = dnnbench.profile(f"onnx:{path}", input_size=size)
        except Exception as exc:  # a benchmark reports every file, failures included
            print(f"{stem:34} FAILED: {type(exc).__name__}: {exc}")
            mismatches += 1
            continue
        dt = time.perf_counter() - t0
        total += dt
        direct = tp.direct_params(path)
        mismatches += direct != p.params
        latency = "-"
        if not args.no_bench:
            try:
                run = dnnbench.bench(f"onnx:{path}", [1], in_process=True, max_time_per_cell=args.max_time,
                                     input_size=size, sensors="none")
                cell = run.cells[0]
                latency = f"{cell.latency_s.median_s * 1e3:.1f}" if cell.latency_s else cell.status
            except Exception as exc:
                latency = f"failed ({type(exc).__name__})"
        extra = [f"{k} x{v}" for k, v in p.uncounted_ops.items()]
        extra += [n.split(":")[0] for n in p.notes if "ONNX Runtime" in n]
        print(f"{stem:34} {model.ir_version:>2} {opset:>5} {p.params:>12,} {direct:>12,} {p.weight_bytes / 1e6:>10.2f} "
              f"{os.path.getsize(path) / 1e6:>8.2f} {p.macs / 1e9:>8.3f} {dt:>9.2f} {latency:>9}  {'; '.join(extra)}")
    print(f"{len(files)} files; profile wall time {total:.1f} s; params equal to the direct count: "
          f"{len(files) - mismatches}/{len(files)}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
