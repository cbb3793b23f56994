"""Ctrl-C and SIGTERM stop a command cleanly wherever they land (core.interrupts, cli.main); real subprocesses."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _spawn(tmp_path: Path, body: str, slow_module: str | None = None) -> subprocess.Popen:
    if slow_module is not None:
        (tmp_path / "slowmod.py").write_text(slow_module)
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    # run with -m, as `python -m dnnbench` and console scripts run: only then does CPython turn a KeyboardInterrupt
    # marked unhandled into death by SIGINT after a clean SystemExit
    return subprocess.Popen([sys.executable, "-m", "script"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": f"{ROOT / 'src'}:{tmp_path}",
                                                                    "PATH": "/usr/bin:/bin"})


def _wait_for(path: Path, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


def _wait_for_threads(pid: int, n: int, timeout_s: float = 20.0) -> None:
    """Until process ``pid`` runs ``n`` threads (Linux: /proc/PID/task)."""
    import os

    deadline = time.monotonic() + timeout_s
    while len(os.listdir(f"/proc/{pid}/task")) < n:
        assert time.monotonic() < deadline, f"the process never ran {n} threads"
        time.sleep(0.01)


SLOW_MODULE = """
import pathlib, time
pathlib.Path("importing").touch()
time.sleep(1.5)
DONE = True
"""

IMPORT_THEN_WORK = """
import sys, time
from dnnbench.core import interrupts
interrupts.install()
try:
    import slowmod
    print("imported", slowmod.DONE, flush=True)
    time.sleep(10)
    print("not interrupted", flush=True)
except KeyboardInterrupt:
    print("interrupted; slowmod complete:", getattr(sys.modules.get("slowmod"), "DONE", False), flush=True)
    sys.exit(130)
"""


def test_a_signal_during_an_import_is_held_until_the_import_is_over(tmp_path):
    p = _spawn(tmp_path, IMPORT_THEN_WORK, SLOW_MODULE)
    _wait_for(tmp_path / "importing")
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    waited = time.monotonic() - t0
    assert p.returncode == 130, (out, err)
    # the import finished (the module is whole), then the signal stopped the 10 s of work right away
    assert out.splitlines() == ["imported True", "interrupted; slowmod complete: True"], (out, err)
    assert waited < 8, waited


def test_a_second_signal_while_one_is_held_stops_the_import_at_once(tmp_path):
    p = _spawn(tmp_path, IMPORT_THEN_WORK, SLOW_MODULE.replace("1.5", "30"))
    _wait_for(tmp_path / "importing")
    p.send_signal(signal.SIGINT)
    # the first request is held once its re-sending thread runs; sending the second before the handler ran (a
    # starved process on a loaded machine) would merge the two into one pending SIGINT, held for the whole import
    _wait_for_threads(p.pid, 2)
    time.sleep(0.1)
    assert p.poll() is None, "the first signal must be held during the import"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 130, (out, err)
    assert out.strip() == "interrupted; slowmod complete: False", (out, err)


def test_a_swallowed_interrupt_is_still_a_stop_request(tmp_path):
    p = _spawn(tmp_path, """
        import os, signal, time
        from dnnbench.core import interrupts
        interrupts.install()
        print("before", interrupts.requested(), flush=True)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except BaseException:  # a library that catches everything
            pass
        print("after", interrupts.requested(), flush=True)
    """)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert out.split() == ["before", "False", "after", "True"]


def test_the_cli_exits_130_when_the_interrupt_passed_through_exec(tmp_path):
    # CPython marks a KeyboardInterrupt that leaves exec()/eval() of a string as "unhandled" even when it is caught
    # later, and the process then dies by SIGINT (-2); the CLI must still exit 130 with its one line
    p = _spawn(tmp_path, """
        import click
        from dnnbench import cli

        @cli.cli.command("boom")
        def boom():
            exec("import os, signal, time; os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)")

        cli.main(["boom"])
    """)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, (p.returncode, err)
    assert err.strip().splitlines()[-1] == "dnnbench: error: interrupted; results measured so far are kept."


def test_the_cli_exits_130_when_a_library_swallowed_the_interrupt(tmp_path):
    p = _spawn(tmp_path, """
        import os, signal, time
        from dnnbench import cli

        @cli.cli.command("swallow")
        def swallow():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except BaseException:
                pass
            print("ran on", flush=True)

        cli.main(["swallow"])
    """)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, (p.returncode, out, err)
    assert out.strip() == "ran on"
    assert "interrupted" in err
