"""Params of every architecture in timm's published ImageNet table, in three forms, against the table.

    python benchmarks/timm_published_params.py CSV [--every N] [--limit N] [--out FILE] [--profile]

CSV is timm's ``results/results-imagenet.csv`` (huggingface/pytorch-image-models; ``param_count`` in millions
at 2 decimals; the architecture is the model name before the dot). For each architecture timm can build here,
its first row's model (``timm:ARCH.TAG``: the tag sets the classifier, e.g. 1,000 classes where the
architecture's default tag has 21,841) is built on the meta device through ``dnnbench.sources.load`` and counted
in three forms:

- **train**: the model as built (``--form train``, the default);
- **reparam**: after re-parameterisation alone (timm's ``reparameterize_model`` walk: RepVGG, MobileOne...);
- **deploy**: re-parameterisation and then every BatchNorm folded into its conv/linear (``--form deploy``).

Each is rounded to the table's 2 decimals, halves to even (which rounding the table uses is checked on the
counts that fall on a half: at aa4b585, 3 of 3 are half-even, 0 half-up) and compared. Printed: the counts of
architectures that differ in train form, how many of those match in reparam-only and in deploy form, and
every architecture that still differs. ``--out`` writes one CSV row per architecture. ``--profile`` also runs
``dnnbench.profile(..., form="deploy")`` (the full count, much slower) and checks its params are the same.
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import re
import sys
import time
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal


def read_table(path: str) -> dict[str, tuple[str, float]]:
    """architecture -> (the model name with its tag, published param_count in millions), first row of each."""
    table: dict[str, tuple[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(line for line in f if not line.startswith("#")):
            name = row.get("model") or row["architecture"]
            table.setdefault(name.split(".")[0], (name, float(row["param_count"].replace(",", ""))))
    return table


def millions(n: int, rounding=ROUND_HALF_EVEN) -> float:
    """``n`` in millions at 2 decimals, rounded exactly (Decimal: no float representation error)."""
    return float((Decimal(n) / Decimal(10**6)).quantize(Decimal("0.01"), rounding=rounding))


def count_forms(name: str, profile: bool = False) -> dict:
    """The three param counts of ``timm:name`` (a tag, if any, sets the head: its num_classes) built on meta,
    and what deploy changed."""
    from dnnbench.counting.deploy import deploy_inplace
    from dnnbench.sources import load

    lm = load(f"timm:{name}", device="meta")
    train = sum(p.numel() for p in lm.module.parameters())
    module, report = deploy_inplace(lm.module, lambda device: lm.inputs.make(1, device))
    row = {"train": train, "reparam": report.params_reparameterized,
           "deploy": sum(p.numel() for p in module.parameters()),
           "reparameterized": report.reparameterized_count, "folded": report.folded,
           "left": sum(report.left.values()), "on_real": bool(report.on_real)}
    if profile:
        import dnnbench

        p = dnnbench.profile(load(f"timm:{name}", device="meta"), form="deploy")
        row["profile_deploy"] = p.params
    return row


def _default_head_differs(timm, model: str) -> bool:
    """Whether ``timm:ARCH`` (its default tag) has another classifier than the tagged ``model`` the table ran:
    e.g. tiny_vit_5m_224's default tag is the in22k one, 21,841 classes; the table's is fine-tuned to 1,000."""
    from timm.models import get_pretrained_cfg

    arch = model.split(".")[0]
    default, tagged = get_pretrained_cfg(arch), get_pretrained_cfg(model)
    return bool(default and tagged and default.num_classes != tagged.num_classes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="timm's results/results-imagenet.csv (or an extract: architecture,param_count)")
    ap.add_argument("--every", type=int, default=1, help="every Nth architecture only (a sample)")
    ap.add_argument("--limit", type=int, default=None, help="the first N architectures (after --every)")
    ap.add_argument("--out", help="write one CSV row per architecture here")
    ap.add_argument("--profile", action="store_true", help="also run dnnbench.profile(form='deploy') on each")
    opts = ap.parse_args(argv)
    t0 = time.perf_counter()
    import timm

    from dnnbench.core.errors import DnnbenchError

    table = read_table(opts.csv)
    known = set(timm.list_models())
    names = [n for n in table if n in known][::opts.every][:opts.limit]
    missing = [n for n in table if n not in known]
    gc.freeze()
    rows, failures = [], []
    t1 = time.perf_counter()
    for name in names:
        s = time.perf_counter()
        try:
            row = count_forms(table[name][0], opts.profile)
        except DnnbenchError as exc:
            failures.append((name, exc.one_line()))
            continue
        except Exception as exc:  # noqa: BLE001 - a crash is a finding of this benchmark, not its end
            failures.append((name, f"CRASH {type(exc).__name__}: {str(exc)[:200]}"))
            continue
        row.update(architecture=name, model=table[name][0], published=table[name][1],
                   default_head=_default_head_differs(timm, table[name][0]), seconds=time.perf_counter() - s)
        for form in ("train", "reparam", "deploy"):
            row[f"{form}_m"] = millions(row[form])
            row[f"{form}_ok"] = row[f"{form}_m"] == row["published"]
        rows.append(row)
    wall = time.perf_counter() - t1

    # which rounding the table uses: the counts whose half-even and half-up roundings differ
    halves = [(r, f) for r in rows for f in ("train", "reparam", "deploy")
              if millions(r[f], ROUND_HALF_UP) != millions(r[f]) and r["published"]
              in (millions(r[f], ROUND_HALF_UP), millions(r[f]))]
    even = sum(r["published"] == millions(r[f]) for r, f in halves)
    up = sum(r["published"] == millions(r[f], ROUND_HALF_UP) for r, f in halves)

    differ = [r for r in rows if not r["train_ok"]]
    by_reparam = [r for r in differ if r["reparam_ok"]]
    by_deploy = [r for r in differ if r["deploy_ok"]]
    remain = [r for r in differ if not r["reparam_ok"] and not r["deploy_ok"]]
    reparam_models = [r for r in rows if r["reparameterized"]]
    print(f"timm {timm.__version__}: {len(names)} of the table's {len(table)} architectures"
          f"{f' (every {opts.every}th)' if opts.every > 1 else ''}; not in this timm: {len(missing)}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"wall time: {wall:.1f} s ({1e3 * wall / max(len(names), 1):.0f} ms an architecture); "
          f"import {t1 - t0:.1f} s")
    print(f"counted: {len(rows)}; failures: {len(failures)}")
    print(f"rounding: {len(halves)} count(s) fall on a half: half-even matches {even}, half-up {up}")
    print(f"architectures whose default tag has another classifier than the table's model: "
          f"{sum(r['default_head'] for r in rows)} (counted here with the table's tag)")
    families = sorted({re.sub(r"_(?:conv|small|base|large|tiny|\d|[a-z]{1,3}\d).*$", "", r["architecture"])
                       for r in reparam_models})
    print(f"re-parameterisable families: {', '.join(families)}")
    print(f"matching the table: train {sum(r['train_ok'] for r in rows)}, reparam-only "
          f"{sum(r['reparam_ok'] for r in rows)}, deploy {sum(r['deploy_ok'] for r in rows)} of {len(rows)}")
    print(f"with a re-parameterisable module: {len(reparam_models)}; of them matching: train "
          f"{sum(r['train_ok'] for r in reparam_models)}, reparam-only {sum(r['reparam_ok'] for r in reparam_models)}, "
          f"deploy {sum(r['deploy_ok'] for r in reparam_models)}")
    print(f"differ in train form: {len(differ)}; of those matching in reparam-only form: {len(by_reparam)}, "
          f"in deploy form: {len(by_deploy)}; in neither: {len(remain)}")
    print(f"matching in train form but not in deploy form (BatchNorm folding removes params the table counts): "
          f"{sum(r['train_ok'] and not r['deploy_ok'] for r in rows)}")
    for r in remain:
        print(f"  still differs: {r['architecture']}: published {r['published']} M; train {r['train']:,}, "
              f"reparam {r['reparam']:,}, deploy {r['deploy']:,} ({r['reparameterized']} re-parameterised, "
              f"{r['folded']} BN folded)")
    for name, error in failures:
        print(f"  FAILED {name}: {error}")
    if opts.profile:
        bad = [r["architecture"] for r in rows if r["profile_deploy"] != r["deploy"]]
        print(f"dnnbench.profile(form='deploy') params equal the deploy count: {len(rows) - len(bad)}/{len(rows)}"
              + (f" (differ: {', '.join(bad)})" if bad else ""))
    slow = sorted(rows, key=lambda r: -r["seconds"])[:6]
    print("slowest:", ", ".join(f"{r['architecture']} {r['seconds']:.1f} s" for r in slow))
    if opts.out:
        fields = ["architecture", "model", "default_head", "published", "train", "reparam", "deploy", "train_ok",
                  "reparam_ok", "deploy_ok", "reparameterized", "folded", "left", "on_real", "seconds"]
        with open(opts.out, "w", newline="") as f:
            w = csv.DictWriter(f, fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
