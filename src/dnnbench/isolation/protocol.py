"""The one protocol between a worker process and its parent, however the worker started.

A worker serves one cell: it gets ``(spec, loader)`` (pickled: the loader is a function or class reference),
runs ``latency.cell.run_cell`` and answers on a ``multiprocessing.connection.Connection``, one JSON document
per message (Connection frames each with its length)::

    {"type": "progress", "phase": str, "n": int, "elapsed_s": float, "ci_rel": float | None}
    {"type": "result", "cell": BenchCell.to_dict()}    # a CellRecord document: BenchCell.from_dict reads it

JSON rather than pickle: the result is the document the store keeps (what the worker writes is what the file
holds), and the parent never unpickles what a worker sends. The worker's stdout/stderr go to a log whose last
line explains a death (``log_tail``); ``cell_from_exit`` turns the exit into a cell: the result if one came,
else "error" on timeout, "oom" for SIGKILL (the kernel's OOM killer), "error" with the exit code otherwise.
How the worker started (``WORKER_FRESH``, ``WORKER_FORKED``) is an argument of ``serve_cell``, recorded with
the cell as ``environment.extra["worker_start"]``.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import struct
from multiprocessing.connection import Connection
from typing import Any

from dnnbench.core.measurements import BenchCell, CellSpec
from dnnbench.latency.cell import Loader, WorkerStart, describe, run_cell
from dnnbench.latency.timing import Progress

WORKER_FRESH = "fresh interpreter"
WORKER_FORKED = "forked from a fork server"
FRESH = WorkerStart(WORKER_FRESH)
TASK_UNREADABLE = 3  # a worker's exit code when it cannot read its task
# Once a message has begun, the rest of it arrives within this time, unless its writer died halfway: the parent
# stops waiting then (a length-prefixed stream cannot resynchronise after a torn message).
MESSAGE_S = 30


# ---- messages ------------------------------------------------------------------------------------

def encode(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg).encode()


def decode(data: bytes) -> dict[str, Any]:
    return json.loads(data)


def send(conn: Connection, msg: dict[str, Any]) -> None:
    conn.send_bytes(encode(msg))


def relay(msg: dict[str, Any], progress: Progress | None) -> dict[str, Any] | None:
    """Act on a worker's message: progress goes to ``progress``; a result's cell document is returned."""
    if msg["type"] == "progress":
        if progress:
            progress(msg["phase"], msg["n"], msg["elapsed_s"], msg["ci_rel"])
    elif msg["type"] == "result":
        return msg["cell"]
    return None


def encode_task(spec: CellSpec, loader: Loader) -> bytes:
    return pickle.dumps((spec, loader))


def decode_task(payload: bytes) -> tuple[CellSpec, Loader]:
    return pickle.loads(payload)


def unreadable_task(exc: BaseException) -> str:
    """The line a worker writes to its log when it cannot read its task (then it exits ``TASK_UNREADABLE``)."""
    return f"dnnbench worker: cannot read its task: {describe(exc)}"


def parent_end(sock: socket.socket) -> Connection:
    """The parent's Connection on its end of a socket pair: a read that stalls mid-message fails after MESSAGE_S.

    ``poll`` says when a message has begun; ``recv_bytes`` then blocks until its last byte, which never comes
    if the writer died halfway and another process still holds the socket open (a fork server's other
    processes do). SO_RCVTIMEO bounds each read, so that becomes an OSError instead of a hang.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", MESSAGE_S, 0))
    return Connection(sock.detach())


# ---- the worker side -----------------------------------------------------------------------------

def serve_cell(spec: CellSpec, loader: Loader, conn: Connection, start: WorkerStart) -> int:
    """Worker side: run the cell in this process, send progress and then the result on ``conn``; exit code 0."""

    def progress(phase: str, n: int, elapsed: float, rel: float | None) -> None:
        send(conn, {"type": "progress", "phase": phase, "n": n, "elapsed_s": elapsed, "ci_rel": rel})

    try:
        cell = run_cell(spec, loader, progress, isolated=True, worker_start=start)
    except Exception as exc:  # run_cell turns failures into cells; this is a bug in the worker itself
        cell = BenchCell(spec, "error", f"worker failure: {describe(exc)}")
    send(conn, {"type": "result", "cell": cell.to_dict()})
    return 0


def child_env(threads: int) -> dict[str, str]:
    """The environment a worker (or fork server) starts with, for cells at ``threads`` threads."""
    env = dict(os.environ)
    # torch.set_num_threads covers torch's pool; these keep OpenMP/MKL pools from oversubscribing.
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ---- the parent side -----------------------------------------------------------------------------

def default_timeout(spec: CellSpec) -> float:
    """Seconds a worker has for its cell: building and preparing the model, then at most 3 timing caps."""
    return 600 + 3 * spec.timing.max_time_s


def log_tail(log, limit: int = 400) -> str:
    """The last non-blank line of a worker's log (a binary file), at most ``limit`` characters."""
    log.seek(0)
    lines = [ln.strip() for ln in log.read().decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else ""


def cell_from_exit(spec: CellSpec, result: dict[str, Any] | None, rc: int | None, timed_out: bool,
                   timeout_s: float, log) -> BenchCell:
    """The cell a worker sent, or the one its death stands for (``rc`` negative: killed by that signal)."""
    if result is not None:
        return BenchCell.from_dict(result)
    if timed_out:
        return BenchCell(spec, "error", f"the worker gave no result within {timeout_s:g} s and was killed")
    tail = log_tail(log)
    if rc == -signal.SIGKILL:
        return BenchCell(spec, "oom", "the worker was killed by SIGKILL, most likely by the kernel's "
                                      "out-of-memory killer" + (f"; last output: {tail}" if tail else ""))
    return BenchCell(spec, "error", f"the worker exited with code {rc}" + (f": {tail}" if tail else ""))
