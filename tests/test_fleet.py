"""A study across a fleet on Ray, for real: a local Ray cluster on loopback, real PostgreSQL, tiny cells.

The cluster is started with `dnnbench node start` (real processes): a head measuring at 2 threads and two
nodes measuring at 1 thread — two setups, one of them on two nodes, standing for three machines. Every Ray
process carries a marker in its environment, so the test finds them all: to check that none listens or
talks off loopback, to kill one node mid-cell, and to clean up (never `ray stop`, which would stop every
Ray process of the machine).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'dnnbench[fleet]'")
psutil = pytest.importorskip("psutil", reason="psutil finds the Ray processes of the test cluster")

from dnnbench import fleet  # noqa: E402
from dnnbench.core.errors import InputError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = "python:tests/bench_models.py:tiny"
CELL = ["--max-time-per-cell", "0.3", "--target-ci", "0.2", "--processes", "1"]  # tiny cells: fleet mechanics
MARK = "DNNBENCH_FLEET_TEST"
# the GCS declares a killed node dead within a few seconds (Ray's default is ~30 s); not faster: a node
# starting on a busy 2-core machine must not be declared dead
FAST_HEALTH = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
               "RAY_health_check_timeout_ms": "3000", "RAY_health_check_failure_threshold": "3"}


def _env(token: str, **extra) -> dict:
    return {**os.environ, MARK: token, "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "200", **extra}


def _dnnbench(args, env, timeout=300, check=True):
    out = subprocess.run([sys.executable, "-m", "dnnbench", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"dnnbench {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def _marked(token: str) -> list:
    """The processes whose environment has the marker (read raw: Ray's agents retitle themselves, which can
    leave psutil's parsed environment without it)."""
    needle = f"{MARK}={token}".encode()
    procs = []
    for p in psutil.process_iter(["pid"]):
        try:
            with open(f"/proc/{p.pid}/environ", "rb") as fh:
                if needle in fh.read():
                    procs.append(p)
        except (psutil.Error, OSError):
            continue
    return procs


def _kill(procs) -> None:
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=10)


class Cluster:
    def __init__(self, tmp: Path):
        self.token = uuid.uuid4().hex
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.tmp = tmp
        self.env = _env(self.token)

    def start(self) -> "Cluster":
        _dnnbench(["node", "start", "--head", "--port", str(self.port), "--node-ip-address", "127.0.0.1",
                   "--threads", "2", "--name", "head2", "--num-cpus", "1", "--object-store-memory", str(80 << 20),
                   "--temp-dir", str(self.tmp)], {**self.env, **FAST_HEALTH})
        for name in ("onea", "oneb"):  # one after the other: Ray picks its ports racily on one host
            p = self.node_async(name)
            out, errs = p.communicate(timeout=300)
            assert p.returncode == 0, out + errs
        return self

    def node_async(self, name: str):
        return subprocess.Popen([sys.executable, "-m", "dnnbench", "node", "start", "--address", self.address,
                                 "--threads", "1", "--name", name, "--num-cpus", "1",
                                 "--object-store-memory", str(80 << 20)], cwd=ROOT, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def raylet_of(self, pid: int):
        """The raylet (the node) that started worker ``pid``."""
        p = psutil.Process(pid)
        while p is not None and p.name() != "raylet":
            p = p.parent()
        return p

    def kill_node_of(self, pid: int) -> str:
        raylet = self.raylet_of(pid)
        assert raylet is not None, f"no raylet above pid {pid}"
        name = next((a.split("=", 1)[1] for a in raylet.cmdline() if a.startswith("--node-name=")), "?")
        _kill([*raylet.children(recursive=True), raylet])
        return name

    def stop(self) -> None:
        for _ in range(5):  # agents a dying raylet started can appear after the first sweep
            procs = _marked(self.token)
            if not procs:
                return
            _kill(procs)
            time.sleep(1)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(Path(f"/tmp/dnb-ray-{uuid.uuid4().hex[:8]}"))  # short: Ray's socket paths have a length limit
    try:
        yield c.start()
    finally:
        c.stop()


_dbs = [0]


@pytest.fixture
def pg_url(pg_server):
    _dbs[0] += 1
    return pg_server.create_db(f"fleet{os.getpid()}_{_dbs[0]}")


def _rows(url: str) -> list[tuple[str, dict]]:
    import sqlalchemy as sa

    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            return [(cid, rec if isinstance(rec, dict) else json.loads(rec))
                    for cid, rec in c.execute(sa.text("SELECT cell_id, record FROM runs"))]
    finally:
        eng.dispose()


def _claims(url: str) -> list:
    import sqlalchemy as sa

    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            return list(c.execute(sa.text("SELECT cell_id, pid FROM claims")))
    except sa.exc.ProgrammingError:  # the study has not created the tables yet
        return []
    finally:
        eng.dispose()


def _planned_here(threads: int, batch_sizes, metrics: str) -> set[str]:
    """The cell ids a local study on this machine plans (nothing measured)."""
    from dnnbench import runner

    plans = []
    runner.study([TINY], runner.StudyConfig(metrics=metrics, batch_sizes=batch_sizes, threads=threads,
                                            max_time_per_cell=0.3, target_ci=0.2, processes=1),
                 store=f"sqlite:///{Path(os.environ.get('TMPDIR', '/tmp')) / f'plan-{uuid.uuid4().hex}.db'}",
                 only=frozenset(), on_event=lambda k, d: plans.extend(d["plans"]) if k == "open" else None)
    return {p.cell_id for p in plans}


def _ray_sockets(token: str) -> list[tuple[str, str, str]]:
    """(process, status, local/remote address) of every inet socket of the test cluster's processes."""
    found = []
    for p in _marked(token):
        try:
            conns = p.net_connections(kind="inet")
            name = p.name()
        except (psutil.Error, OSError):
            continue
        for c in conns:
            for addr in (c.laddr, c.raddr):
                if addr:
                    found.append((name, c.status, addr.ip))
    return found


def _loopback(ip: str) -> bool:
    import ipaddress

    ip = ip.removeprefix("::ffff:")
    return ipaddress.ip_address(ip).is_loopback


@pytest.mark.slow
def test_fleet_study_stores_every_cell_once_with_local_ids_on_loopback(cluster, pg_url):
    args = ["study", TINY, "--cluster", cluster.address, "--store", pg_url, "--metrics", "profile,time",
            "--batch-sizes", "1,2", *CELL]
    out = _dnnbench(args, cluster.env)
    rows = _rows(pg_url)
    ids = [cid for cid, _ in rows]
    # 2 setups x (2 profile + 2 time) cells, the profile cells shared (a profile's id has no thread count)
    expected = _planned_here(1, (1, 2), "profile,time") | _planned_here(2, (1, 2), "profile,time")
    assert len(expected) == 6
    assert sorted(ids) == sorted(expected), out.stdout + out.stderr  # exactly once each, the ids a local study plans
    bench = [rec for _, rec in rows if rec["kind"] == "bench"]
    assert sorted(r["spec"]["threads"] for r in bench) == [1, 1, 2, 2]
    assert all(r["status"] == "ok" for _, r in rows), [r["message"] for _, r in rows]
    assert "6 cells measured" in out.stdout and "0 left" in out.stdout

    again = _dnnbench(args, cluster.env)  # resumable: nothing is measured twice
    assert "0 cells measured" in again.stdout and "6 already stored" in again.stdout, again.stdout
    assert sorted(cid for cid, _ in _rows(pg_url)) == sorted(expected)

    # --threads with --cluster: a count no node measures at is one line, naming the setups there are
    with pytest.raises(InputError, match="matches --on all at 3 threads: its setups are: .*2 threads"):
        fleet.study([TINY], threads=3, cluster=cluster.address, store=pg_url, metrics="time")

    socks = _ray_sockets(cluster.token)
    assert any(s[0] == "gcs_server" for s in socks) and any(s[0] == "raylet" for s in socks), socks
    off = [s for s in socks if not _loopback(s[2])]
    assert not off, f"Ray sockets off loopback: {off}"
    assert any(s[1] == psutil.CONN_LISTEN for s in socks)


@pytest.mark.slow
def test_node_killed_mid_cell_retried_then_left_then_resumed(cluster, pg_url):
    t1 = [s for s in _setups(cluster) if s.threads == 1]  # the 1-thread setup, on nodes onea and oneb
    assert len(t1) == 1 and len(t1[0].nodes) == 2
    key = t1[0].key

    def study(sizes, check=True):
        return subprocess.Popen([sys.executable, "-m", "dnnbench", "study", TINY, "--cluster", cluster.address,
                                 "--on", key, "--store", pg_url, "--metrics", "time", "--batch-sizes", sizes, *CELL],
                                cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def kill_when_claimed(proc):
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            held = _claims(pg_url)
            if held:
                before = dict(_rows(pg_url))
                return cluster.kill_node_of(held[0].pid), before
            time.sleep(0.2)
        raise AssertionError("no cell was claimed: " + "".join(proc.communicate()))

    # 1. a node dies mid-cell: its cell is retried on the other node of the setup; all 4 cells stored once
    p = study("1,2,3,4")
    killed, before = kill_when_claimed(p)
    out, errs = p.communicate(timeout=300)
    rows = dict(_rows(pg_url))
    assert p.returncode == 0, out + errs
    assert len(rows) == 4 and "4 cells measured" in out, out + errs
    assert "(raylet)" not in out and "ray: " not in out, out  # Ray's messages to the driver stay off stdout
    assert "retried on node" in errs and "1 retried on another node" in out, out + errs
    assert all(rows[cid] == rec for cid, rec in before.items())  # nothing stored was lost or changed
    survivor = "oneb" if killed == "onea" else "onea"
    print(f"\nkilled {killed} mid-cell with {len(before)} cells stored:", out.splitlines()[0])

    # 2. the setup's last node dies mid-cell: what is not stored is left (and said), nothing stored is lost
    p = study("1,2,3,4,5,6")
    _, before = kill_when_claimed(p)
    out, errs = p.communicate(timeout=300)
    rows = dict(_rows(pg_url))
    assert p.returncode == 1, out + errs
    left = 6 - len(rows)
    assert left >= 1 and f"{left} left" in out, out + errs
    assert "not stored:" in out
    print(f"killed the last 1-thread node with {len(before)} cells stored:", out.splitlines()[0])
    assert all(rows[cid] == rec for cid, rec in before.items())

    # 3. a node of the setup joins again; Ctrl-C mid-cell keeps what is stored, frees the node's slot (its agent
    # is stopped), and the re-run measures only what is missing
    n = cluster.node_async(survivor)
    assert n.wait(timeout=300) == 0, n.communicate()
    p = study("1,2,3,4,5,6")
    deadline = time.time() + 240
    while time.time() < deadline and not _claims(pg_url):
        time.sleep(0.2)
    before = dict(_rows(pg_url))
    p.send_signal(signal.SIGINT)
    out, errs = p.communicate(timeout=120)
    assert p.returncode == 130 and "interrupted" in errs and "Traceback" not in errs, out + errs
    assert all(dict(_rows(pg_url))[cid] == rec for cid, rec in before.items())
    left = 6 - len(_rows(pg_url))
    p = study("1,2,3,4,5,6")
    out, errs = p.communicate(timeout=300)
    assert p.returncode == 0, out + errs
    assert f"{left} cells measured" in out and f"{6 - left} already stored" in out, out
    assert len(_rows(pg_url)) == 6 == len({cid for cid, _ in _rows(pg_url)})
    print("re-run:", out.splitlines()[0])


def _setups(cluster):
    r = fleet.connect(cluster.address)
    try:
        return fleet.setups_of(fleet.discover(r))
    finally:
        r.shutdown()


def test_cluster_without_ray_is_one_line():
    code = ("import sys; sys.modules['ray'] = None\n"
            "from dnnbench.cli import main\n"
            "main(['study', 'tiny', '--cluster', '127.0.0.1:9', '--metrics', 'profile'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "dnnbench[fleet]" in lines[0] and "Traceback" not in out.stderr, out.stderr


def test_nothing_of_ray_without_cluster():
    code = "import dnnbench.runner, dnnbench.cli, sys; assert 'ray' not in sys.modules, 'ray imported'"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_unreachable_cluster_is_one_line(cli):
    out = cli("study", "tiny", "--cluster", f"127.0.0.1:{_free_port()}", "--metrics", "profile")
    assert out.returncode == 2 and "cannot reach the Ray cluster" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def _setup(name, fp="f" * 16, threads=1, cuda=False, host="elsewhere"):
    return fleet.FleetSetup(fp, threads, ("n1",), f"{name}, {threads} threads", cuda=cuda, hostnames=(host,))


def test_select_setups_by_name_device_and_fingerprint():
    a, b = _setup("jetson", fp="a" * 16, cuda=True), _setup("xeon", fp="b" * 16, threads=8)
    assert fleet.select([a, b], "all") == [a, b]
    assert fleet.select([a, b], "cuda") == [a] and fleet.select([a, b], "cpu") == [b]
    assert fleet.select([a, b], "xeon") == [b] and fleet.select([a, b], "aaaa") == [a]
    assert fleet.select([a, b], b.key) == [b]
    with pytest.raises(fleet.InputError, match="no dnnbench node of the cluster matches --on tx2"):
        fleet.select([a, b], "tx2")


def test_threads_picks_the_setups_measuring_at_that_count():
    one, two = _setup("a", threads=1), _setup("b", threads=2)
    assert fleet.at_threads([one, two], "all", None) == [one, two]
    assert fleet.at_threads([one, two], "all", 2) == [two]
    with pytest.raises(InputError) as exc:
        fleet.at_threads([one, two], "cpu", 4)
    line = exc.value.one_line()
    assert "matches --on cpu at 4 threads" in line and "a, 1 threads" in line and "--threads 4" in line


def test_sqlite_store_refused_for_nodes_elsewhere():
    import socket

    here = {"hostname": socket.gethostname()}
    fleet.check_shared_store("sqlite:////tmp/x.db", [here])  # one machine: a file is fine
    fleet.check_shared_store("postgresql+psycopg://u@h/db", [{"hostname": "elsewhere"}])
    with pytest.raises(fleet.InputError, match="cannot share a SQLite store.*postgresql"):
        fleet.check_shared_store("sqlite:////tmp/x.db", [here, {"hostname": "elsewhere"}])


def test_node_resources_advertise_setup_and_slot():
    res = fleet.node_resources("abcd", [1, 4], "tx1")
    assert res[fleet.SLOT] == 1 and res[fleet.NODE] == 1
    assert res["dnnbench-setup:abcd:t1"] == res["dnnbench-setup:abcd:t4"] == 1
    assert res["dnnbench-name:tx1"] == 1 and res["dnnbench-machine:abcd"] == fleet.MACHINE_UNITS
    with pytest.raises(fleet.InputError, match="--threads"):
        fleet.parse_threads("0,2")
