"""`dnnbench import`: latencies measured on a device that cannot run dnnbench, into the store."""

from __future__ import annotations

import click

from dnnbench.cli.output import command, dump, err, out
from dnnbench.cli.params import format_option, store_option, threads_option


@command(name="import")
@click.argument("file", metavar="FILE")
@click.option("--device-name", required=True, metavar="NAME",
              help="The device that measured it, e.g. 'Pixel 8': its cells form a setup of their own.")
@click.option("--from", "source", type=click.Choice(["auto", "csv", "executorch", "tflite"]), default="auto",
              show_default=True, help="The file's format: a CSV (model,batch_size,runtime,precision,latency_s per "
                                      "iteration), ExecuTorch executor_runner's log, TFLite benchmark_model's log.")
@click.option("--model", default=None, help="The model, when the file does not say it (tool logs).")
@click.option("--batch-size", type=int, default=None, help="The batch size, when the file does not say it.")
@click.option("--runtime", default=None, metavar="NAME", help="What ran it (e.g. xnnpack), when the file does not say.")
@click.option("--precision", default=None, metavar="NAME", help="e.g. fp32, int8, when the file does not say it.")
@threads_option(help="Threads the device's tool ran with [default: unknown].")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|gpu|npu",
              help="What the device's tool ran the model on.")
@click.option("--replace", is_flag=True, help="Re-store cells this file already stored (same cell ids).")
@store_option()
@format_option(click.Choice(["table", "json"]), default="table")
def import_(file, source, replace, store, fmt, **settings):
    """Import per-iteration latencies measured on another device by its own tool (nothing stored if the file
    is bad); `report` and `pick` then show that device beside this machine."""
    from dnnbench import api
    from dnnbench.core.view import metrics

    # the device's settings (--device-name, --model, --batch-size, --runtime, --precision, --threads, --device)
    # are imported.Options' fields by name
    res = api.import_file(file, store=store, fmt=source, replace=replace, **settings)
    if fmt == "json":
        dump({"file": res.path, "format": res.format, "device_name": res.device_name, "store": res.where,
              "stored": res.stored, "skipped": res.skipped,
              "records": [{**r.to_dict(), "metrics": metrics(r).as_dict()} for r in res.records]})
        return
    for r in res.records:
        m = metrics(r)
        med = m.get("latency_median_s")
        mean = m.get("latency_mean_s")
        n = m.get("latency_samples")
        shown = (f"median {med * 1e3:.3f} ms" if med is not None else "median unavailable") + \
            (f", mean {mean * 1e3:.3f} ms" if mean is not None else "") + \
            (f", {int(n)} samples" if n is not None else f" ({m.notes.get('latency_samples', '')})")
        out.print(f"{r.model} batch {r.batch_size} {r.spec['runtime']} {r.spec['precision']}: {shown}",
                  markup=False, highlight=False, soft_wrap=True)
    what = f"{res.stored} cell{'s' if res.stored != 1 else ''} of {res.device_name} ({res.format}) into {res.where}"
    err.print(f"imported {what}" + (f"; {res.skipped} stored already (pass --replace to re-store)"
                                    if res.skipped else ""), markup=False, highlight=False, soft_wrap=True)
