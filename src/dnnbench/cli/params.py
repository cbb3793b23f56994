"""Option types and shared options: each check is written once, and fails with our one-line what/why/fix (exit 2)."""

from __future__ import annotations

import click

from dnnbench.core.errors import InputError


class _OneLineRange:
    """click's range check, failing with a DnnbenchError line ("--threads 0 is not allowed: why. Fix: ...")
    instead of click's generic "Invalid value" text; text that is not a number stays click's usage error."""

    _plain: click.ParamType

    def __init__(self, *args, why: str, fix, **kwargs):  # fix: text with {opt}, or a function of the option
        super().__init__(*args, **kwargs)
        self.why, self.fix = why, fix

    def convert(self, value, param, ctx):
        number = self._plain.convert(value, param, ctx)
        try:
            return super().convert(number, param, ctx)
        except click.BadParameter:
            opt = param.opts[0] if param is not None and param.opts else "the value"
            fix = self.fix(opt) if callable(self.fix) else self.fix.format(opt=opt)
            raise InputError(f"{opt} {number} is not allowed", self.why, fix) from None


class IntRange(_OneLineRange, click.IntRange):
    name = "integer"  # the metavar stays INTEGER; the range itself is shown in --help
    _plain = click.INT


class FloatRange(_OneLineRange, click.FloatRange):
    name = "float"
    _plain = click.FLOAT


class BatchSizes(click.ParamType):
    """"1,2,4" -> (1, 2, 4), through the one parser of batch-size lists (core.measurements)."""

    name = "batch_sizes"

    def convert(self, value, param, ctx):
        from dnnbench.core.measurements import parse_batch_sizes

        return parse_batch_sizes(value)


class Device(click.ParamType):
    """cpu, cuda or cuda:N (whether it exists here is checked when it is used)."""

    name = "device"

    def convert(self, value, param, ctx):
        from dnnbench.core.measurements import check_device_name

        return check_device_name(value)


BATCH_SIZE = IntRange(min=1, why="a batch holds at least one item", fix="use {opt} 1 or more")
BATCH_SIZES = BatchSizes()
DEVICE = Device()
THREADS = IntRange(min=1, why="at least one thread must run the model",
                   fix="use {opt} 1 or more (default: the physical cores)")
LIMIT = IntRange(min=1, why="it must be 1 or more", fix="use {opt} 1 or more")
TARGET_CI = FloatRange(min=0, max=1, min_open=True, max_open=True,
                       why="it is a fraction of the median, between 0 and 1", fix="use e.g. {opt} 0.02 for +/-2 %")
SECONDS = FloatRange(min=0, min_open=True, why="a cell needs some time",
                     fix="use a positive number of seconds, e.g. {opt} 10")
MIN_SAMPLES = IntRange(min=1, why="at least one sample is needed", fix="use {opt} 10")
PROCESSES = IntRange(min=1, max=100, why="a cell runs in 1 to 100 worker processes",
                     fix=lambda opt: f"use {opt} {_default_processes()} (the default), or 1 for one process per cell")


def _default_processes() -> int:
    from dnnbench.core.measurements import DEFAULT_PROCESSES  # lazily: `dnnbench --help` stays light

    return DEFAULT_PROCESSES


def format_option(choices=None, default: str = "table"):
    from dnnbench.cli.output import FORMATS

    return click.option("--format", "fmt", type=choices or FORMATS, default=default, show_default=True)


def store_option(help: str = "Results store [default: $DNNBENCH_STORE or the default file]."):
    return click.option("--store", default=None, metavar="URL|PATH", help=help)


def threads_option(help: str = "CPU threads (torch.set_num_threads). Default: the physical cores."):
    return click.option("--threads", type=THREADS, default=None, help=help)


def form_option():
    """--form train|deploy: the model as built, or what an inference runtime executes (BatchNorm folded,
    re-parameterisable blocks fused)."""
    return click.option("--form", type=click.Choice(["train", "deploy"]), default="train", show_default=True,
                        help="train: the model as built; deploy: BatchNorm folded into the preceding conv/linear "
                             "and re-parameterisable blocks fused (RepVGG, MobileOne...), as a runtime executes it.")
