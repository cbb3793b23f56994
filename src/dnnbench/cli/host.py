"""`dnnbench runtimes`, `sensors` and `machine`: what this machine offers."""

from __future__ import annotations

import click

from dnnbench.cli.output import command, dump, err
from dnnbench.cli.params import DEVICE, format_option, threads_option
from dnnbench.cli.render import host as render


@command()
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda", help="cpu, cuda or cuda:N.")
@format_option()
def runtimes(device, fmt):
    """Which runtimes (--runtime) work here and why not, and which precisions each runs on DEVICE.

    Always exits 0; `bench --runtime X` with an unavailable X is the error, with the same reason.
    """
    from dnnbench import api

    rows = api.runtimes(device)
    if fmt == "json":
        dump(rows)
    else:
        render.runtimes(rows, device)


@command()
@click.argument("spec", required=False, metavar="[SENSORS]")
@format_option()
def sensors(spec, fmt):
    """List the power sensors: which work here, what each covers, and why the others do not.

    SENSORS (optional) checks a --sensors value instead of listing all: e.g. nvml:0, rapl,
    jetson:VDD_IN, meter:power.csv. Always exits 0 when the value is well formed, even if nothing works.
    """
    from dnnbench import api

    infos = api.sensors(spec)
    if fmt == "json":
        dump([i.to_dict() for i in infos])
    else:
        render.sensors(infos)


@command()
@click.option("--device", type=DEVICE, default="cpu", show_default=True, metavar="cpu|cuda", help="cpu, cuda or cuda:N.")
@threads_option(help="CPU threads. Default: the physical cores.")
@click.option("--cached", is_flag=True, help="Show the cached peaks of this machine without measuring.")
@format_option()
def machine(device, threads, cached, fmt):
    """Measure this machine's peak fp32 FLOP/s (best of GEMM and convolution probes) and memory bandwidth.

    The result is cached per machine fingerprint (in $DNNBENCH_CACHE_DIR, default ~/.cache/dnnbench);
    `dnnbench bench` reads it to report achieved FLOP/s as a % of this peak.
    """
    from dnnbench import api
    from dnnbench.host.machine import cache_path

    if not cached:
        err.print("measuring peak FLOP/s and bandwidth (about 10 s)...")
    peaks = api.machine(device, threads, cached=cached)
    if fmt == "json":
        dump([p.to_dict() for p in peaks])
    else:
        render.machine(peaks, cache_path(peaks[0].fingerprint))
