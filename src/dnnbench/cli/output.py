"""Where the CLI writes: the consoles, the JSON payload, and the guard that keeps ``--format json`` stdout clean."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import click
from rich.console import Console

# Piped output (files, CI logs) gets a wide table instead of rich's 80-column default.
out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, markup=False)

FORMATS = click.Choice(["table", "json"])

_PENDING = "dnnbench.stdout"  # ctx.meta key: payloads held back until the command's stdout is restored


def fail(message: str, code: int) -> None:
    click.echo(f"dnnbench: error: {message}", err=True)
    sys.exit(code)


def emit(text: str, nl: bool = True) -> None:
    """Write a payload (JSON, CSV) to stdout; under the JSON guard it is held and written once stdout is back."""
    ctx = click.get_current_context(silent=True)
    pending = ctx.meta.get(_PENDING) if ctx is not None else None
    if pending is not None:
        pending.append((text, nl))
    else:
        click.echo(text, nl=nl)


def dump(obj) -> None:
    emit(json.dumps(obj, indent=2, default=str))


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to stdout meanwhile to stderr: Python prints and, through fd 1, C-level writes
    and the child processes started here (a model factory that prints must not corrupt the JSON)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no usable fd 1 (an embedding host): Python-level redirection still holds
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for stream in (sys.stdout, sys.__stdout__):  # what was buffered during the block belongs to stderr
            with contextlib.suppress(Exception):
                stream.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


class Command(click.Command):
    """A command whose ``--format json`` stdout holds the JSON alone: while it runs, stdout goes to stderr;
    what it emits is written to the real stdout afterwards (also when it then exits non-zero, as pick does)."""

    def invoke(self, ctx: click.Context):
        if ctx.params.get("fmt") != "json":
            return super().invoke(ctx)
        pending: list[tuple[str, bool]] = []
        ctx.meta[_PENDING] = pending
        try:
            with stdout_to_stderr():
                return super().invoke(ctx)
        finally:
            del ctx.meta[_PENDING]
            for text, nl in pending:
                click.echo(text, nl=nl)


def command(**kwargs):
    """``click.command`` with the JSON guard; every dnnbench command is made with it."""
    return click.command(cls=Command, **kwargs)
