"""Command line: parse -> api -> render -> exit code. Nothing else lives here.

One module per command family (options and the api call), renderers in ``cli.render`` (display only),
option types in ``cli.params``, the consoles and the ``--format json`` stdout guard in ``cli.output``.
"""

from __future__ import annotations

import os
import sys

import click

from dnnbench.cli import accuracy as _accuracy
from dnnbench.cli import bench as _bench
from dnnbench.cli import fleet as _fleet
from dnnbench.cli import host as _host
from dnnbench.cli import imports as _imports
from dnnbench.cli import profile as _profile
from dnnbench.cli import results as _results
from dnnbench.cli import study as _study
from dnnbench.cli.output import Command, err, fail, out
from dnnbench.core import interrupts
from dnnbench.core.errors import DnnbenchError
from dnnbench.core.version import __version__

__all__ = ["cli", "main", "out", "err"]


class _Group(click.Group):
    command_class = Command


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dnnbench")
def cli():
    """dnnbench: what it costs to deploy a neural network (params, MACs, memory, time, power, accuracy)."""


# click lists them by name in --help; each command's module holds its options and its api call.
for _cmd in (_profile.profile, _profile.models, _accuracy.accuracy, _host.runtimes, _host.sensors, _bench.bench,
             _host.machine, _study.study, _results.export, _results.pick, _results.report, _imports.import_,
             _fleet.node):
    cli.add_command(_cmd)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one line per user mistake, a non-zero exit, never a traceback."""
    interrupts.install()  # `kill PID` stops a command as Ctrl-C does: finished cells kept and said, claims released
    try:
        cli.main(args=argv, prog_name="dnnbench", standalone_mode=False)
        if interrupts.requested():  # a library caught the KeyboardInterrupt and the command ran on: still a stop
            raise KeyboardInterrupt
    except DnnbenchError as exc:
        fail(exc.one_line(), exc.exit_code)
    except click.UsageError as exc:
        hint = f" Run `{exc.ctx.command_path} --help`." if exc.ctx else ""
        fail(f"{exc.format_message().rstrip('.')}.{hint}", 2)
    except (click.Abort, KeyboardInterrupt):
        # An interrupt that passed through exec/eval of a string (namedtuple, dataclass creation during a lazy
        # import) leaves CPython's "unhandled KeyboardInterrupt" flag set, and the process would then die by
        # SIGINT instead of exiting 130; running any string through exec clears that flag.
        exec("pass")
        fail("interrupted; results measured so far are kept.", 130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug in dnnbench, not a user mistake
        if os.environ.get("DNNBENCH_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        fail(f"internal error {type(exc).__name__}: {first}. Please report it; "
             "set DNNBENCH_DEBUG=1 to see the traceback.", 1)
