"""The fork server: cells forked from one long-lived server, each its own process with its own peak RSS, and
every way a cell or the server can die reported as a fresh worker's death is."""

import os

import pytest

import dnnbench
from dnnbench.core.measurements import CellSpec, TimingSpec
from dnnbench.isolation import forkserver
from dnnbench.isolation.dispatch import run_isolated
from dnnbench.isolation.fresh import run_fresh
from dnnbench.isolation.protocol import WORKER_FORKED, WORKER_FRESH
from tests.forkserver_models import (ExitHardLoader, HangLoader, KillModelProcessLoader, KillServerLoader,
                                     RaiseLoader, SigkillLoader, ThreadLoader, WhereLoader)

MODELS = os.path.join(os.path.dirname(__file__), "bench_models.py")
MiB = 1 << 20


def spec(name: str = "m", batch: int = 1, threads: int = 1) -> CellSpec:
    return CellSpec(name, batch, "cpu", threads, TimingSpec(max_time_s=0.2, min_samples=3))


def server() -> forkserver.ForkServer:
    (s,) = forkserver.servers()
    return s


def forked(cell) -> bool:
    return cell.environment is not None and cell.environment.extra.get("worker_start") == WORKER_FORKED


def test_cells_are_fresh_processes_forked_from_one_server_each_with_its_own_peak(tmp_path):
    big, small = WhereLoader(str(tmp_path / "big"), 200 * MiB), WhereLoader(str(tmp_path / "small"))
    a = run_isolated(spec("big"), big)
    pid = server().pid
    b = run_isolated(spec("small"), small)
    again = run_isolated(spec("small", 2), small)
    assert [c.status for c in (a, b, again)] == ["ok"] * 3, (a.message, b.message, again.message)
    assert all(forked(c) for c in (a, b, again)) and server().pid == pid
    assert "forked from a fork server" in a.memory.method
    wa, wb = big.read(), small.read()
    assert len({wa["pid"], wb["pid"], os.getpid()}) == 3  # every cell is its own process
    assert wb["ppid"] == server().model_pid != pid  # forked from the model process, forked from the server
    assert a.rss_above_baseline_bytes >= 200 * MiB
    assert b.rss_above_baseline_bytes < 32 * MiB  # the previous cell's 200 MB is not this one's
    assert b.peak_rss_bytes < a.peak_rss_bytes - 150 * MiB
    assert again.rss_above_baseline_bytes < 32 * MiB


def test_a_cell_killed_by_sigkill_is_oom_and_the_server_serves_the_next(tmp_path):
    run_isolated(spec(), WhereLoader(str(tmp_path / "w")))
    pid = server().pid
    cell = run_isolated(spec("killed"), SigkillLoader())
    assert cell.status == "oom"
    assert "killed by SIGKILL" in cell.message and "allocating a lot" in cell.message  # its own output's tail
    nxt = run_isolated(spec(), WhereLoader(str(tmp_path / "w")))
    assert nxt.status == "ok" and forked(nxt) and server().pid == pid


def test_a_cell_that_raises_or_exits_hard_is_an_error_with_its_reason(tmp_path):
    cell = run_isolated(spec("raises"), RaiseLoader())
    assert cell.status == "error" and cell.message == "ValueError: injected failure in the build"
    assert forked(cell)
    cell = run_isolated(spec("exits"), ExitHardLoader())
    assert cell.status == "error"
    assert cell.message == "the worker exited with code 3: about to leave with os._exit(3)"
    assert run_isolated(spec(), WhereLoader(str(tmp_path / "w"))).status == "ok"


def test_bench_cells_go_through_the_server_and_an_error_stays_in_its_cell():
    run = dnnbench.bench(f"python:{MODELS}:error_at_2", [1, 2, 4], max_time_per_cell=0.2, min_samples=3, threads=1)
    assert {c.batch_size: c.status for c in run.cells} == {1: "ok", 2: "error", 4: "ok"}
    assert run.cell(2).message == "ValueError: injected failure at batch 2"
    assert all(forked(run.cell(b)) for b in (1, 4))
    assert run.cell(1).spec.isolation == "subprocess"


def test_no_answer_in_time_kills_the_cell_not_the_server(tmp_path):
    run_isolated(spec(), WhereLoader(str(tmp_path / "w")))  # the server is up: the timeout is the cell's
    pid = server().pid
    cell = run_isolated(spec("hangs"), HangLoader(), timeout_s=3)
    assert cell.status == "error" and "no result within 3 s" in cell.message
    assert run_isolated(spec(), WhereLoader(str(tmp_path / "w"))).status == "ok" and server().pid == pid


@pytest.mark.parametrize("loader, who", [(KillServerLoader(), "the fork server was killed by signal 9"),
                                         (KillModelProcessLoader(), "model process was killed by signal 9")])
def test_a_server_that_dies_gives_an_error_cell_and_the_next_cell_a_new_server(tmp_path, loader, who):
    run_isolated(spec(), WhereLoader(str(tmp_path / "w")))
    pid = server().pid
    cell = run_isolated(spec("dies"), loader)
    assert cell.status == "error" and who in cell.message
    assert forkserver.servers() == []
    nxt = run_isolated(spec(), WhereLoader(str(tmp_path / "w")))
    assert nxt.status == "ok" and forked(nxt) and server().pid != pid


def test_a_server_serves_one_thread_count(tmp_path):
    where = WhereLoader(str(tmp_path / "w"))
    assert run_isolated(spec(threads=1), where).status == "ok"
    one = server().pid
    assert where.read()["omp"] == "1"
    assert run_isolated(spec(threads=1), where).status == "ok" and server().pid == one  # reused
    cell = run_isolated(spec(threads=2), where)
    assert cell.status == "ok" and forked(cell) and cell.environment.threads == 2
    assert where.read()["omp"] == "2"  # OMP_NUM_THREADS is set when a server starts: a new one
    assert server().pid != one and server().threads == 2
    assert run_isolated(spec(threads=1), where).status == "ok"
    assert server().threads == 1 and server().pid not in (one,) and where.read()["omp"] == "1"


def test_a_model_process_with_extra_threads_falls_back_to_a_fresh_interpreter(tmp_path):
    cell = run_isolated(spec("threaded"), ThreadLoader())
    assert cell.status == "ok", cell.message
    assert cell.environment.extra["worker_start"] == WORKER_FRESH
    assert "threads" in cell.environment.extra["worker_start_note"]
    pid = server().pid  # the server itself is fine: the next model forks again
    nxt = run_isolated(spec(), WhereLoader(str(tmp_path / "w")))
    assert forked(nxt) and server().pid == pid


def test_a_forked_cell_has_a_fresh_interpreters_baseline(tmp_path):
    """Library pages the server had resident are mapped into the child before the baseline, as a fresh one has them."""
    where = WhereLoader(str(tmp_path / "w"))
    fresh = run_fresh(spec(), where)
    fork = run_isolated(spec(), where)
    assert fresh.environment.extra["worker_start"] == WORKER_FRESH and forked(fork)
    assert abs(fork.memory.baseline_rss_bytes - fresh.memory.baseline_rss_bytes) < 32 * MiB
    assert fork.rss_above_baseline_bytes < 32 * MiB


def test_cuda_cells_and_a_switched_off_server_start_fresh_interpreters(monkeypatch):
    assert "CUDA" in forkserver._fork_unusable(CellSpec("m", 1, "cuda", 1))
    assert forkserver._fork_unusable(spec()) is None
    monkeypatch.setenv("DNNBENCH_FORKSERVER", "0")
    assert "turned off" in forkserver._fork_unusable(spec())


def test_prestart_prepares_the_model_process_the_next_cell_uses(tmp_path):
    from dnnbench.isolation.dispatch import prestart

    where = WhereLoader(str(tmp_path / "w"))
    prestart(spec(), where)
    pid = server().pid
    prestart(spec(), where)  # the same model: nothing more is sent
    cell = run_isolated(spec(), where)
    assert cell.status == "ok" and forked(cell) and server().pid == pid
    assert where.read()["ppid"] == server().model_pid


def test_the_prestarted_server_serves_the_first_cell_of_a_bench(monkeypatch):
    """bench prestarts the server while it profiles; the profile must not change what the server is keyed on
    (torch writes TORCHINDUCTOR_CACHE_DIR into os.environ when asked for its cache folder), or the first cell
    starts a second server and waits for torch to be imported again."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    from dnnbench.core.measurements import BenchConfig

    forkserver.shutdown()
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    started = []
    init, prestart = forkserver.ForkServer.__init__, forkserver.prestart

    def counted(self, *args, **kwargs):
        started.append(args[0])
        init(self, *args, **kwargs)

    def prestart_then_cache_dir(spec, loader):
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)  # as in a process that never asked for it
        prestart(spec, loader)
        cache_dir()  # what the static profile of some models does next

    monkeypatch.setattr(forkserver.ForkServer, "__init__", counted)
    monkeypatch.setattr(forkserver, "prestart", prestart_then_cache_dir)
    run = dnnbench.bench("python:tests/bench_models.py:tiny", config=BenchConfig(
        threads=1, batch_sizes=(1,), max_time_per_cell=0.2, target_ci=0.5, processes=1))
    assert run.cells[0].status == "ok", run.cells[0].message
    assert "TORCHINDUCTOR_CACHE_DIR" in os.environ  # the environment did change after the prestart
    assert started == [1]  # one server (at 1 thread), the prestarted one
