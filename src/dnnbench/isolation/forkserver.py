"""A fork server ("zygote") for bench cells: torch is imported once per run, every cell is a forked process.

A fresh ``python -m dnnbench.isolation.fresh`` per cell spends seconds importing torch and torchvision before it
measures anything. Instead one long-lived server (``python -m dnnbench.isolation.forkserver``, started with the
cells' thread environment) imports torch once. For a model it forks a *model process* that maps the server's
resident library pages, runs the loader's ``prepare()`` (torchvision/timm imports) and the runtime's imports,
then ``os.fork()``s one child per cell; models whose ``prepare()`` imports the same libraries (all torchvision
models) share one model process (``_model_key``). The child runs exactly what a fresh worker runs
(``protocol.serve_cell``: ``run_cell(..., isolated=True)``) and sends the same messages. Each cell is still its
own process, so its peak RSS is its own and a crash stays in its cell; and a cell's baseline holds torch and the
libraries its model imports, as in a fresh worker, not what models of other libraries imported before it.

Both directions are ``multiprocessing.connection`` messages (a length, then the bytes) over inherited file
descriptors; neither end buffers beyond the message it reads, which is what lets the server and its model
process take turns reading one pipe. Parent -> server (a pipe on the server's stdin, read by the server or by
the model process currently serving): a JSON header ``{"kind": "cell", "log": PATH}`` followed by a message
holding ``protocol.encode_task(spec, loader)``; ``{"kind": "prepare"}`` and its task, the same without
running a cell (the model process prepares while the parent computes static profiles); or
``{"kind": "release"}``: the model process exits and the server reads the next frame (sent when the model key
changes: the libraries, runtime or precision). Server side -> parent, JSON messages on a socket pair
(``protocol.parent_end``): ``model`` (the model process's pid, sent by it), ``started`` (the cell's pid, sent
by the cell itself as its first message: the parent kills it on timeout), the cell's ``progress`` and
``result`` (``protocol``), then ``exit`` (its exit code, negative for a signal, as ``subprocess`` gives it);
``nofork`` with the reason when forking would be unsafe (``dispatch`` runs the cell in a fresh interpreter
instead); ``model_exit`` when a model process died (the parent drops the server: the next cell starts a new
one). Several processes write that socket, never two at once, so that every message stays whole (a large
result takes several writes): the server only while no model process lives (``nofork``, ``model_exit``), a
model process only while none of its cells lives (``model``, ``nofork``, ``exit``), a cell while it lives.

Fork safety: neither the server nor a model process runs torch compute or touches ``torch.cuda``; before
every fork the forking process checks it has a single thread (numpy's OpenBLAS pool is shut down by
OpenBLAS's own fork handler, so one throwaway fork settles it). CUDA cells start a fresh interpreter
(``_fork_unusable``).

Memory: a forked child shares its parent's pages, but Linux does not copy the page tables of read-only file
mappings (library code): the child would fault back in, while it runs, code pages that a fresh worker had
resident before its baseline, and charge them to the model (about 30 MiB for resnet50 at batch 1), and its
baseline would be lower by the whole of torch's resident code (about 330 MiB). So each forking process lists
its resident file-backed pages (``/proc/self/pagemap``) before a fork and the child maps them again
(``MADV_POPULATE_READ``) first thing: baseline and above-baseline keep a fresh worker's meaning.
"""

from __future__ import annotations

import atexit
import gc
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from dnnbench.core.measurements import BenchCell, CellSpec
from dnnbench.isolation import protocol
from dnnbench.latency.cell import WorkerStart

_DISABLE_ENV = "DNNBENCH_FORKSERVER"  # "0": every cell starts a fresh interpreter
_PREFAULT_ENV = "DNNBENCH_FORK_PREFAULT"  # "0": skip re-mapping the server's file pages (to measure the effect)
# Runtimes whose library imports may happen in the server. onnxruntime's import starts a thread, which would
# make the server unforkable; its cells import it in the child, before the baseline, as a fresh worker does.
_SERVER_IMPORTS = ("eager", "compile")
_MAX_SERVERS = 1  # each holds torch resident (hundreds of MiB): a new (threads, environment) replaces the old


# ---- parent side -----------------------------------------------------------------------------------

class ServerDied(Exception):
    """The server (or its model process) died or stopped answering while serving a cell."""


class NoFork(Exception):
    """No fork server serves this cell (the reason is the message); run it in a fresh interpreter."""


class ForkServer:
    """One server subprocess for cells with the same thread count and environment."""

    def __init__(self, threads: int, env: dict[str, str]):
        self.threads = threads
        self.env = env
        self.log = tempfile.TemporaryFile(prefix="dnnbench-forkserver-")
        mine, theirs = socket.socketpair()
        ctl_r, ctl_w = os.pipe()
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "dnnbench.isolation.forkserver",
                                          str(theirs.fileno())], stdin=ctl_r, stdout=self.log, stderr=self.log,
                                         pass_fds=(theirs.fileno(),), env=env)
        except BaseException:
            mine.close()
            os.close(ctl_w)
            self.log.close()
            raise
        finally:
            theirs.close()
            os.close(ctl_r)
        self.control = Connection(ctl_w, readable=False)
        self.events = protocol.parent_end(mine)
        self.broken = False
        self.model_key: bytes | None = None  # what the live model process serves, if any
        self.model_pid: int | None = None
        self.child: int | None = None  # the pid of the cell being served

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return not self.broken and self.proc.poll() is None

    def close(self) -> None:
        """Stop the server, its model process and a cell it is running; idempotent."""
        if self.child is not None or self.broken:  # interrupted or in an unknown state: kill, at once
            for pid in (self.child, self.model_pid):
                if pid is not None:
                    _kill(pid)  # they die with their parents too (PR_SET_PDEATHSIG), but not at once
            if self.proc.poll() is None:
                self.proc.kill()
        self.child = self.model_pid = None
        try:
            self.control.close()  # EOF: the model process exits, then the server
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):  # Ctrl-C while exiting: stop it, no traceback
            self.proc.kill()
            self.proc.wait()
        self.events.close()
        self.log.close()

    def server_tail(self) -> str:
        try:
            return protocol.log_tail(self.log)
        except (OSError, ValueError):
            return ""

    def _send(self, model_key: bytes, header: dict, payload: bytes) -> None:
        if self.model_key is not None and self.model_key != model_key:
            self.control.send_bytes(protocol.encode({"kind": "release"}))  # the model process exits
        self.control.send_bytes(protocol.encode(header))
        self.control.send_bytes(payload)

    def prepare(self, model_key: bytes, payload: bytes) -> None:
        """Have the model process for ``model_key`` started and prepared now, without waiting for it."""
        if self.model_key == model_key:
            return
        try:
            self._send(model_key, {"kind": "prepare"}, payload)
        except (OSError, ValueError):
            self.broken = True  # the next cell starts a new server
            return
        self.model_key = model_key

    def run(self, model_key: bytes, payload: bytes, log_path: str, progress, timeout_s: float
            ) -> tuple[dict[str, Any] | None, int | None, bool]:
        """Serve one cell: (result dict or None, the cell's exit code or None, timed out).

        Raises ``NoFork`` when the server declines, ``ServerDied`` when it dies or stops answering before
        the cell's result arrived. ``broken`` is set when the server cannot serve another cell.
        """
        deadline = time.monotonic() + timeout_s
        try:
            self._send(model_key, {"kind": "cell", "log": log_path}, payload)
        except (OSError, ValueError) as exc:
            self.broken = True
            raise ServerDied(f"the fork server could not take the cell ({type(exc).__name__})") from None
        self.model_key = model_key
        result = None
        timed_out = False
        killed_at: float | None = None
        while True:
            try:
                msg = self._receive(1.0)
            except EOFError:  # the server and everything it forked are gone
                return self._gave_up(result, self._died_message())
            except (OSError, ValueError):  # stalled halfway (protocol.parent_end), or torn and spliced
                return self._gave_up(result, _death("a message from the fork server", None, self.server_tail(),
                                                    "broke off halfway (its writer died while writing it)"))
            if msg is not None:
                kind = msg["type"]
                if kind == "model":
                    self.model_pid = msg["pid"]
                elif kind == "started":
                    self.child = msg["pid"]
                elif kind == "nofork":
                    self.model_key = self.model_pid = None  # the model process has exited
                    raise NoFork(msg["reason"])
                elif kind == "exit":
                    self.child = None
                    return result, msg["returncode"], timed_out
                elif kind == "model_exit":
                    self.model_pid = None
                    return self._gave_up(result, _death("the fork server's model process", msg["returncode"],
                                                        self.server_tail()))
                elif (cell := protocol.relay(msg, progress)) is not None:
                    result = cell
                    # as for a fresh worker: 30 s more to exit, then it is killed
                    deadline = min(deadline, time.monotonic() + 30)
            elif self.proc.poll() is not None and not self.events.poll(0):
                return self._gave_up(result, self._died_message())
            now = time.monotonic()
            if killed_at is not None:
                if now - killed_at > 30:
                    return self._gave_up(result, "the fork server did not report the end of its killed cell")
            elif now >= deadline:
                if self.child is None:  # not forked yet: stuck importing or preparing
                    return self._gave_up(result, f"the worker gave no result within {timeout_s:g} s and was "
                                                 f"killed (the fork server was still preparing the model)")
                timed_out = result is None
                _kill(self.child)
                killed_at = now

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None if none began within ``timeout`` s; EOFError when every writer is gone."""
        if not self.events.poll(timeout):
            return None
        return protocol.decode(self.events.recv_bytes())

    def _gave_up(self, result, why: str):
        """The server cannot go on: keep a result that arrived, else the cell is an error."""
        self.broken = True
        if result is None:
            raise ServerDied(why)
        return result, None, False

    def _died_message(self) -> str:
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        return _death("the fork server", rc, self.server_tail())


def _death(who: str, rc: int | None, tail: str, how: str = "") -> str:
    how = how or (f"was killed by signal {-rc}" if rc is not None and rc < 0 else
                  f"exited with code {rc}" if rc is not None else "closed its pipe")
    return f"{who} {how} while serving this cell" + (f"; last output: {tail}" if tail else "")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


_LOCK = threading.Lock()
_SERVERS: dict[tuple, ForkServer] = {}
_UNFORKABLE: dict[bytes, str] = {}  # model keys whose model process had extra threads -> why
_ATEXIT = False


# PYTEST_CURRENT_TEST changes with every test, and nothing a cell measures reads it. TORCHINDUCTOR_CACHE_DIR:
# torch writes its default into os.environ the first time anything asks for the cache folder (the static
# profile does, after the server was prestarted); a server started without it computes the same default.
# Keyed on, either would start a second server for the first cell (about 3 s: torch imported again).
_ENV_IGNORED = ("PYTEST_CURRENT_TEST", "TORCHINDUCTOR_CACHE_DIR")


def _key(threads: int, env: dict[str, str]) -> tuple:
    """A server serves one thread count (OMP/MKL_NUM_THREADS are read at its start) and one environment."""
    return (threads, tuple(sorted((k, v) for k, v in env.items() if k not in _ENV_IGNORED)))


def server_for(threads: int, env: dict[str, str]) -> ForkServer:
    """The cached server for this thread count and environment, started (or restarted) if needed."""
    global _ATEXIT
    key = _key(threads, env)
    server = _SERVERS.get(key)
    if server is not None and not server.alive():
        _retire(key)
        server = None
    if server is None:
        while len(_SERVERS) >= _MAX_SERVERS:
            _retire(next(iter(_SERVERS)))
        server = _SERVERS[key] = ForkServer(threads, env)
        if not _ATEXIT:
            atexit.register(shutdown)
            _ATEXIT = True
    return server


def _retire(key: tuple) -> None:
    server = _SERVERS.pop(key, None)
    if server is not None:
        server.close()


def shutdown() -> None:
    """Stop every fork server this process started (also registered with atexit)."""
    locked = _LOCK.acquire(timeout=10)  # a cell stuck in another thread must not hang the exit
    try:
        for key in list(_SERVERS):
            _retire(key)
    finally:
        if locked:
            _LOCK.release()


def servers() -> list[ForkServer]:
    """The live servers (for tests and diagnostics)."""
    return list(_SERVERS.values())


def _fork_unusable(spec: CellSpec) -> str | None:
    """Why this cell cannot go through a fork server here, or None."""
    if os.environ.get(_DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"the fork server is turned off ({_DISABLE_ENV}=0)"
    if not hasattr(os, "fork") or not sys.platform.startswith("linux") or not os.path.isdir("/proc/self/task"):
        return "forking a server is supported on Linux only"
    if spec.device.startswith("cuda"):
        return ("CUDA cells start a fresh interpreter: a forked child may only use CUDA if its parent never "
                "initialised the driver, which the server cannot prove for every library it imports")
    return None


def unusable(spec: CellSpec, loader) -> str | None:
    """Why cells like ``spec`` cannot be forked from a server here (they start fresh interpreters), or None."""
    return _fork_unusable(spec) or _UNFORKABLE.get(_model_key(spec, loader))


def forkable(spec: CellSpec, loader) -> bool:
    """Whether cells like ``spec`` are forked from a server here (else each starts a fresh interpreter)."""
    return unusable(spec, loader) is None


def run(spec: CellSpec, loader, progress=None, timeout_s: float | None = None) -> BenchCell:
    """Run one cell in a child forked from the cached server; ``NoFork`` (why) where that cannot be done.

    Same results as ``fresh.run_fresh``: SIGKILL is an "oom" cell, any other death an "error" cell with the
    tail of the child's own output, no answer within ``timeout_s`` an "error" cell. A server that dies
    gives this cell an "error"; the next cell starts a new server.
    """
    if timeout_s is None:
        timeout_s = protocol.default_timeout(spec)
    model_key = _model_key(spec, loader)
    why = _fork_unusable(spec) or _UNFORKABLE.get(model_key)
    if why is not None:
        raise NoFork(why)
    payload = protocol.encode_task(spec, loader)
    env = protocol.child_env(spec.threads)
    key = _key(spec.threads, env)
    fd, log_path = tempfile.mkstemp(prefix="dnnbench-cell-", suffix=".log")
    os.close(fd)
    try:
        with _LOCK:
            server = server_for(spec.threads, env)
            try:
                result, rc, timed_out = server.run(model_key, payload, log_path, progress, timeout_s)
            except NoFork as exc:
                _UNFORKABLE[model_key] = str(exc)
                raise
            except ServerDied as exc:
                _retire(key)
                return BenchCell(spec, "error", str(exc)[:600])
            except BaseException:  # KeyboardInterrupt, a bug: the server's state is unknown
                _retire(key)
                raise
            else:
                if server.broken:
                    _retire(key)
        with open(log_path, "rb") as log:
            return protocol.cell_from_exit(spec, result, rc, timed_out, timeout_s, log)
    finally:
        try:
            os.unlink(log_path)
        except OSError:
            pass


def prestart(spec: CellSpec, loader) -> None:
    """Start the server for cells like ``spec`` and have it prepare ``loader``'s model while the caller works on.

    Nothing is waited for; a failure shows in the first cell. Does nothing where cells start fresh interpreters.
    """
    model_key = _model_key(spec, loader)
    if _fork_unusable(spec) or model_key in _UNFORKABLE:
        return
    env = protocol.child_env(spec.threads)
    with _LOCK:
        server_for(spec.threads, env).prepare(model_key, protocol.encode_task(spec, loader))


def _model_key(spec: CellSpec, loader) -> bytes:
    """Cells with the same key share a model process: they prepare (import) the same libraries.

    A loader's ``prepare_key()`` names what its ``prepare()`` imports (every torchvision model: torchvision),
    so a study of torchvision models imports torchvision once; without one, the loader itself is the key.
    The runtime and precision are part of it: a runtime's imports (Inductor) are its cells' only.
    """
    group = getattr(loader, "prepare_key", None)
    return pickle.dumps((group() if callable(group) else loader, spec.runtime, spec.precision))


# ---- server side -----------------------------------------------------------------------------------

def thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _single_threaded() -> int:
    """This process's thread count, after one throwaway fork if it had more than one.

    OpenBLAS (numpy's) shuts its thread pool down in its own fork handler; other threads stay.
    """
    n = thread_count()
    if n == 1:
        return n
    try:
        pid = os.fork()
    except OSError:
        return n
    if pid == 0:
        os._exit(0)
    for _ in range(500):  # the child exits at once; never hang on it
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        _kill(pid)
        os.waitpid(pid, 0)
    return thread_count()


_PAGEMAP_CHUNK = 8192  # entries read at once: 64 KiB, below glibc's mmap threshold (see resident_file_pages)


def resident_file_pages() -> list[tuple[int, int]]:
    """(address, length) runs of pages of readable file mappings resident in this process (Linux pagemap).

    Every buffer here stays small: freeing a large (mmap-backed) block raises glibc's dynamic mmap
    threshold, which a forked cell would inherit and a fresh worker would not, changing the cell's peak.
    """
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - torch brings numpy; without it, a slower loop
        np = None
    runs: list[tuple[int, int]] = []
    mapping = [0]  # index of this mapping's first run: runs never span two mappings

    def add(addr: int, length: int) -> None:
        if len(runs) > mapping[0] and runs[-1][0] + runs[-1][1] == addr:  # continues across a chunk edge
            runs[-1] = (runs[-1][0], runs[-1][1] + length)
        else:
            runs.append((addr, length))

    try:
        maps = open("/proc/self/maps")
        pagemap = open("/proc/self/pagemap", "rb", buffering=0)
    except OSError:
        return runs
    buf = bytearray(_PAGEMAP_CHUNK * 8)
    with maps, pagemap:
        for line in maps:
            parts = line.split(None, 5)
            if len(parts) < 6 or parts[4] == "0" or not parts[1].startswith("r"):
                continue
            path = parts[5].strip()
            if not path.startswith("/") or path.startswith("/dev/"):
                continue  # anonymous, [heap]/[stack]/[vvar], device memory: never touched from here
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            mapping[0] = len(runs)
            for first in range(lo // page, hi // page, _PAGEMAP_CHUNK):
                n = min(_PAGEMAP_CHUNK, hi // page - first)
                try:
                    pagemap.seek(first * 8)
                    got = pagemap.readinto(memoryview(buf)[:n * 8]) // 8
                except OSError:
                    break
                base = first * page
                if np is not None:
                    present = (np.frombuffer(buf, dtype="<u8", count=got) >> np.uint64(63)).astype(np.int8)
                    if not present.any():
                        continue
                    edges = np.diff(present, prepend=np.int8(0), append=np.int8(0))
                    for s, e in zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()):
                        add(base + s * page, (e - s) * page)
                else:
                    entries = memoryview(buf)[:got * 8].cast("Q")
                    start = None
                    for i, entry in enumerate(entries):
                        if entry >> 63 and start is None:
                            start = i
                        elif not entry >> 63 and start is not None:
                            add(base + start * page, (i - start) * page)
                            start = None
                    if start is not None:
                        add(base + start * page, (got - start) * page)
    return runs


def populate(runs: list[tuple[int, int]]) -> int:
    """Map ``runs`` into this process's page tables (they are in the page cache); bytes mapped."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    madvise = libc.madvise
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    page = os.sysconf("SC_PAGE_SIZE")
    populate_read = 22  # MADV_POPULATE_READ, Linux >= 5.14
    total = 0
    for addr, length in runs:
        if madvise(addr, length, populate_read) == 0:
            total += length
            continue
        if ctypes.get_errno() != 22:  # EINVAL: an older kernel; anything else (EFAULT): skip the run
            continue
        for a in range(addr, addr + length, page):  # the same, one read per page
            ctypes.string_at(a, 1)
        total += length
    return total


def _set_pdeathsig() -> None:
    """Die with the server: an orphaned cell must not go on measuring (Linux prctl)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_TASK_KINDS = ("cell", "prepare")  # frames whose header is followed by a task message


def _read_frame(control: Connection) -> tuple[dict, bytes] | None:
    """The next frame (header, task; empty for a release), or None at EOF: the parent is done, or gone.

    Connection reads exactly one message's bytes from the shared pipe (no read-ahead): what follows is left
    for whichever process, the server or its model process, reads next.
    """
    try:
        header = protocol.decode(control.recv_bytes())
        task = control.recv_bytes() if header.get("kind") in _TASK_KINDS else b""
    except (EOFError, OSError):  # OSError: EOF in the middle of a message (the parent died writing it)
        return None
    return header, task


def _forked(parent: int) -> None:
    """First thing in a forked process: die with ``parent`` (an orphan must not go on), or exit if it is gone."""
    _set_pdeathsig()
    if os.getppid() != parent:
        os._exit(71)


_FORKED_MEMORY = ("; the worker was forked from a fork server: the server's resident file-backed pages were "
                  "mapped into it before the baseline, as a fresh interpreter has them")
_UNMAPPED_MEMORY = (f"; the worker was forked from a fork server, without mapping in its resident file-backed "
                    f"pages ({_PREFAULT_ENV}=0): library code faulted in while running counts above the baseline")


def _cell(spec, loader, events: Connection, log_path: str, runs, parent: int) -> None:
    """The forked cell: become a fresh worker for this cell, then exit without running anything of its parent's."""
    code = 70
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the servers ignore Ctrl-C; a worker does not
        _forked(parent)
        protocol.send(events, {"type": "started", "pid": os.getpid()})  # first: the parent may kill it from now on
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        if runs:
            populate(runs)  # the library pages a fresh worker has resident, before its baseline
        start = WorkerStart(protocol.WORKER_FORKED, _FORKED_MEMORY if runs else _UNMAPPED_MEMORY)
        import torch

        torch.default_generator.manual_seed(torch.initial_seed())  # a fresh interpreter's CPU generator
        code = protocol.serve_cell(spec, loader, events, start=start)
    except BaseException:  # noqa: BLE001 - whatever it is goes to the cell's own log, whose tail is reported
        _print_exc()
    finally:
        _exit_flushed(code)


def _fork(prefault: bool) -> tuple[int, list[tuple[int, int]]]:
    """Fork with output flushed; also the resident file pages the child maps again (``prefault``).

    The parent's objects are collected and then frozen (``gc.freeze``, as the gc docs advise before a fork):
    the child's own full collections, one before its clock starts, then skip them (0.19 s each with torch
    imported, otherwise) and do not write to their pages (copy-on-write that would count as the model's memory).
    """
    gc.collect()
    gc.freeze()
    runs = resident_file_pages() if prefault else []
    sys.stdout.flush()
    sys.stderr.flush()
    return os.fork(), runs


def _print_exc() -> None:
    """The current exception's traceback to stderr (the process's own log), never raising."""
    try:
        import traceback

        traceback.print_exc()
    except BaseException:  # noqa: BLE001
        pass


def _exit_flushed(code: int) -> None:
    """Flush stdout/stderr and leave at once (a forked process must not run its parent's exit handlers)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _unpickle(header: dict, payload: bytes, events: Connection | None):
    """(spec, loader), or None after reporting the cell as a fresh worker that cannot read its task would."""
    try:
        return protocol.decode_task(payload)
    except Exception as exc:
        if events is None:  # only preparing: the cell reports it
            return None
        with open(header["log"], "a") as log:
            log.write(protocol.unreadable_task(exc) + "\n")
        protocol.send(events, {"type": "exit", "pid": None, "returncode": protocol.TASK_UNREADABLE})
        return None


def _model(header: dict, payload: bytes, control: Connection, events: Connection, runs, parent: int,
           prefault: bool) -> None:
    """The forked model process: prepare once (its libraries), then fork a child per cell until released."""
    code = 0
    try:
        _forked(parent)
        protocol.send(events, {"type": "model", "pid": os.getpid()})  # the server writes nothing while it lives
        if runs:
            populate(runs)  # the server's resident library pages, so that this process's own list is complete
        from dnnbench import runtimes
        from dnnbench.latency import timing

        me = os.getpid()
        prepared: set[bytes] = set()  # each loader's prepare() once here (it may not be idempotent)
        imported = False
        frame: tuple[dict, bytes] | None = (header, payload)
        while frame is not None and frame[0].get("kind") in _TASK_KINDS:
            header, payload = frame
            cell = header["kind"] == "cell"
            task = _unpickle(header, payload, events if cell else None)
            if task is not None:
                spec, loader = task
                try:
                    prepare = getattr(loader, "prepare", None)
                    who = pickle.dumps(loader)
                    if prepare is not None and who not in prepared:
                        prepared.add(who)
                        prepare()  # imports (torchvision, timm) every later cell here inherits
                    if not imported and spec.runtime in _SERVER_IMPORTS:
                        imported = True
                        runtimes.import_libraries(spec)
                    timing.prime(spec.timing)  # computed once here, inherited by every cell
                except Exception:  # the cell runs it again inside run_cell and reports the failure
                    pass
            if task is not None and cell:
                n = _single_threaded()
                if n > 1:
                    protocol.send(events, {"type": "nofork",
                                           "reason": f"the fork server's model process had {n} threads after "
                                                     f"preparing this model, and forking a multi-threaded "
                                                     f"process is unsafe"})
                    break
                pid, cell_runs = _fork(prefault)
                if pid == 0:
                    _cell(spec, loader, events, header["log"], cell_runs, me)  # never returns
                del spec, loader, task, cell_runs
                _, status = os.waitpid(pid, 0)  # the cell says "started" itself: it is the only writer now
                protocol.send(events, {"type": "exit", "pid": pid,
                                       "returncode": os.waitstatus_to_exitcode(status)})
            frame = _read_frame(control)  # the next cell of this model, or a release, or EOF
    except BaseException:  # noqa: BLE001
        code = 70
        _print_exc()
    finally:
        _exit_flushed(code)


def serve(events_fd: int) -> int:
    """The server: import torch once, then fork a model process per model; exit at EOF on stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it shuts us down
    import torch  # noqa: F401  (the point of the server: imported once)

    from dnnbench import runtimes  # noqa: F401
    # protocol, imported with this module, brought latency.cell: what a cell runs is imported before any fork,
    # as a fresh worker imports it before its baseline
    control = Connection(0, writable=False)
    events = Connection(events_fd, readable=False)
    _single_threaded()
    prefault = os.environ.get(_PREFAULT_ENV, "1").strip() not in ("0", "false", "no", "off")
    me = os.getpid()
    while True:
        frame = _read_frame(control)
        if frame is None:
            return 0  # EOF: the parent is done (or gone)
        header, payload = frame
        if header.get("kind") not in _TASK_KINDS:
            continue  # a release with no model process left to release
        n = _single_threaded()
        if n > 1 and header["kind"] == "prepare":
            continue  # the cell that follows is told
        if n > 1:
            protocol.send(events, {"type": "nofork", "reason": f"the fork server had {n} threads, and forking a "
                                                               f"multi-threaded process is unsafe"})
            continue
        pid, runs = _fork(prefault)
        if pid == 0:
            _model(header, payload, control, events, runs, me, prefault)  # never returns
        del runs, payload
        _, status = os.waitpid(pid, 0)  # the model process says "model" itself: it is the only writer now
        rc = os.waitstatus_to_exitcode(status)
        if rc != 0:  # stdin may be mid-frame: report and stop; the parent starts a new server
            protocol.send(events, {"type": "model_exit", "pid": pid, "returncode": rc})
            return 1


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
