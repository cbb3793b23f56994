"""Profile every torchvision classification model at batch 64 in one process; print the wall time.

Target (issue 2): under 30 s on a 2-core machine. Counting runs on meta tensors, so the time is
Python dispatch overhead, not arithmetic.
"""

import sys
import time

t0 = time.perf_counter()
import torchvision.models as tvm  # noqa: E402

import dnnbench  # noqa: E402
from dnnbench.sources import load  # noqa: E402

BATCH = int(sys.argv[1]) if len(sys.argv) > 1 else 64
t_import = time.perf_counter() - t0
names = tvm.list_models(module=tvm)
per_model = []
t1 = time.perf_counter()
for name in names:
    s = time.perf_counter()
    p = dnnbench.profile(load(f"torchvision:{name}", device="meta"), batch_size=BATCH)
    per_model.append((time.perf_counter() - s, name, p.macs))
total = time.perf_counter() - t1
per_model.sort(reverse=True)
print(f"models profiled:            {len(names)} at batch {BATCH}")
print(f"import time:                {t_import:.2f} s")
print(f"profiling wall time:        {total:.2f} s  (build + count, all models)")
print(f"total incl. imports:        {time.perf_counter() - t0:.2f} s  (target < 30 s)")
print("slowest:", ", ".join(f"{n} {t:.2f} s" for t, n, _ in per_model[:5]))
