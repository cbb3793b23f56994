"""Ctrl-C and `kill PID` that stop a command cleanly, whenever they arrive.

Python raises KeyboardInterrupt wherever the main thread happens to be. During an import that is harmful: libraries
swallow it (torch's C++ start-up catches the failed ``import numpy`` and carries on without NumPy, so the signal is
lost and the study runs to the end), leave a module half-initialised ("cannot load module more than once per
process"), or abort the process. So a stop request that lands inside an import is held until the import is over and
then delivered again, as a real signal so that a blocking call wakes up; a second request while one is held is
delivered at once (a user who presses Ctrl-C twice means it). :func:`requested` tells the CLI that a stop was asked
for even where some library caught the KeyboardInterrupt, so such a run still ends as interrupted.
"""

from __future__ import annotations

import signal
import threading
import time

_requested: int | None = None  # the signal of the first stop request, None while none came
_held = False  # a request is held until the main thread is out of an import
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_lock = threading.Lock()  # the handler and the re-sending thread agree on whether a request is still held


def _in_import(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


def _redeliver(signum: int, main_ident: int) -> None:
    """Wait until the main thread has left every import, then send it the signal again."""
    import sys

    global _held
    while True:
        time.sleep(0.01)
        with _lock:
            if not _held:  # a second request was delivered meanwhile: this one must not be sent again
                return
            frame = sys._current_frames().get(main_ident)
            if frame is None:  # the main thread is gone: the process is exiting anyway
                return
            if not _in_import(frame):
                _held = False
                signal.pthread_kill(main_ident, signum)
                return


def _handler(signum, frame) -> None:
    global _requested, _held
    with _lock:
        second = _held
        _held = False
    if second:  # a second request while the first is held: the user means it (and the first is not re-sent)
        raise KeyboardInterrupt
    if _requested is None:
        _requested = signum
    if _in_import(frame):
        _held = True
        thread = threading.Thread(target=_redeliver, args=(signum, threading.main_thread().ident), daemon=True,
                                  name="dnnbench-interrupt")
        # the thread starts with the stop signals blocked (a new thread inherits the mask): a second Ctrl-C sent to
        # the process then goes to the main thread and wakes its blocking call; delivered to this thread it would
        # only set CPython's flag, and the main thread would sleep on until its call returned by itself
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return
    raise KeyboardInterrupt


def install() -> None:
    """SIGINT and SIGTERM stop the process with KeyboardInterrupt (never inside an import); main thread only."""
    global _requested, _held
    _requested, _held = None, False
    if threading.current_thread() is not threading.main_thread():
        return  # an embedding application's thread: leave its handlers alone
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(signum, _handler)
        except (ValueError, OSError):
            pass


def requested() -> bool:
    """Whether a stop was asked for since :func:`install` (even if a library swallowed its KeyboardInterrupt)."""
    return _requested is not None
