"""A worker in a fresh interpreter: ``python -m dnnbench.isolation.fresh FD``, one cell, then it exits.

It imports torch again (seconds), so ``dispatch`` uses it only where the fork server cannot serve a cell
(CUDA, a model whose libraries start threads, the server turned off, not Linux). Parent and worker share
a socket pair: the parent sends the task on it, the worker answers on it (``protocol``).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

from dnnbench.core.measurements import BenchCell, CellSpec
from dnnbench.isolation import protocol
from dnnbench.latency.cell import Loader
from dnnbench.latency.timing import Progress


def run_fresh(spec: CellSpec, loader: Loader, progress: Progress | None = None,
              timeout_s: float | None = None) -> BenchCell:
    """Run one cell in a fresh ``python -m dnnbench.isolation.fresh`` and return what it measured."""
    if timeout_s is None:
        timeout_s = protocol.default_timeout(spec)
    mine, theirs = socket.socketpair()
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.Popen([sys.executable, "-m", "dnnbench.isolation.fresh", str(theirs.fileno())],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(theirs.fileno(),),
                                    env=protocol.child_env(spec.threads))
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()  # the worker's copy is its own: its exit is this end's EOF
        with protocol.parent_end(mine) as conn:
            try:
                conn.send_bytes(protocol.encode_task(spec, loader))
            except OSError:
                pass  # it died before reading its task: its exit code and log say why
            result, timed_out = _receive(conn, timeout_s, progress)
        if timed_out:
            proc.kill()
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        return protocol.cell_from_exit(spec, result, rc, timed_out, timeout_s, log)


def _receive(conn: Connection, timeout_s: float, progress: Progress | None) -> tuple[dict[str, Any] | None, bool]:
    """The worker's messages until it closes its end: (the result's cell document or None, timed out)."""
    deadline = time.monotonic() + timeout_s
    result = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return result, True
        try:
            if not conn.poll(min(left, 1.0)):
                continue
            msg = protocol.decode(conn.recv_bytes())
        except (EOFError, OSError, ValueError):  # it exited (OSError, ValueError: in the middle of a message)
            return result, False
        cell = protocol.relay(msg, progress)
        if cell is not None:
            result = cell


def main(argv: list[str]) -> int:
    """The worker: read (spec, loader) from the socket whose fd is argv[1], run the cell, answer on it."""
    conn = Connection(int(argv[1]))
    try:
        spec, loader = protocol.decode_task(conn.recv_bytes())
    except Exception as exc:
        print(protocol.unreadable_task(exc), file=sys.stderr)
        return protocol.TASK_UNREADABLE
    code = protocol.serve_cell(spec, loader, conn, start=protocol.FRESH)
    conn.close()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
