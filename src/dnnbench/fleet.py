"""A study across a fleet of machines on Ray (extra ``dnnbench[fleet]``): one store, one progress view.

A machine joins a Ray cluster with ``dnnbench node start --address ADDR`` (``start_node``): a Ray worker node
whose custom resources advertise its dnnbench setup — its machine fingerprint and the thread count it measures
at — and its one exclusive measuring slot:

- ``dnnbench-node``: 1 (it is a dnnbench node), ``dnnbench-slot``: 1 (the machine's one measuring slot);
- ``dnnbench-setup:<fingerprint>:t<threads>``: 1 per thread count it measures at;
- ``dnnbench-machine:<fingerprint>``: 1000 (static profiles, which run in parallel);
- ``dnnbench-name:<name>``: 1 when ``--name`` labels it.

``study`` (``dnnbench study ... --cluster ADDR``) connects, finds the dnnbench nodes, and has a node of each
target setup plan the study there (``runner.study`` with nothing to measure), so every cell's identity is
exactly what a local study on that machine would plan. Cells already stored are skipped. Static profiles are
Ray tasks that run in parallel on any node of their machine. Every other cell runs through its node's
*agent* (``_Agent``): one Ray actor per node for the study, holding the node's measuring slot, so two
measurements never share a machine, the cell records that node's environment, and the process stays warm
(imports, store, fork server) from cell to cell; it warms while the profiles run, and measured cells start
once they are done, so nothing runs beside a measurement. Each agent takes the next cell of its setups as it
finishes one; the cell (``runner.study`` for that one cell) commits itself to the store. A node lost mid-cell
(its agent dies): the cell goes back to its setup's queue for another node (``MAX_RETRIES``); the retry takes
over the claim (one claims owner per fleet study) and skips the cell if it was committed before the node died
(``Store.put`` is idempotent by cell id); a setup with no node left has its cells reported as left for the
next run. Ctrl-C stops the agents (the cell in progress is lost, never half stored) and keeps what was
committed; a spent budget lets the cells in progress finish and starts no more.

Nothing here is imported without ``--cluster``; Ray is imported lazily (``MissingExtraError`` without it).
On a loopback address every Ray process is kept on 127.0.0.1: Ray resolves a loopback node address to the
machine's interface address (ray-project/ray#59110) unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which also
refuses to start worker nodes; ``ray_main`` runs Ray's own ``ray start`` with both worked around.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from dnnbench.core.errors import DnnbenchError, InputError, MissingExtraError, UnavailableError

NODE = "dnnbench-node"
SLOT = "dnnbench-slot"
SETUP = "dnnbench-setup:"  # + "<fingerprint>:t<threads>"
MACHINE = "dnnbench-machine:"  # + "<fingerprint>"
NAME = "dnnbench-name:"  # + "<name>"
MACHINE_UNITS = 1000  # static profiles in parallel per node (each also takes a Ray CPU)
MAX_RETRIES = 2  # a cell whose node or measuring process died is run again this many times (elsewhere)
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")

FleetEvent = Callable[[str, dict], None]


def require_ray(loopback: bool = False):
    """Ray, or a one-line MissingExtraError naming ``dnnbench[fleet]``. ``loopback``: keep it on 127.0.0.1."""
    if loopback and "ray" not in sys.modules:
        os.environ[LOOPBACK_ENV] = "0"  # read when Ray is imported: local addresses stay local
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("ray is needed for a study across a fleet (--cluster) and for `dnnbench node`",
                                "pip install 'dnnbench[fleet]'") from exc
    if loopback:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # Ray was imported before: the same, read at call time
    return ray


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_address(address: str) -> tuple[str, int]:
    """'host:port' -> (host, port); a one-line InputError otherwise."""
    host, sep, port = (address or "").strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(f"cluster address {address!r} is malformed", "a Ray cluster address is HOST:PORT",
                         "write e.g. --cluster 10.0.0.5:6379 (the head's address and port)")
    return host, int(port)


# -- the node side: joining the cluster --------------------------------------------------------------------------
def node_resources(fingerprint: str, threads: list[int], name: str | None = None) -> dict[str, float]:
    res = {NODE: 1.0, SLOT: 1.0, f"{MACHINE}{fingerprint}": float(MACHINE_UNITS)}
    res.update({f"{SETUP}{fingerprint}:t{t}": 1.0 for t in threads})
    if name:
        res[f"{NAME}{name}"] = 1.0
    return res


def parse_threads(text) -> list[int]:
    if text is None:
        from dnnbench.host import environment

        return [environment.default_threads()]
    items = [w.strip() for w in str(text).split(",") if w.strip()]
    if not items or not all(w.isdigit() and int(w) >= 1 for w in items):
        raise InputError(f"--threads {text!r} is not allowed", "a node measures at one or more thread counts >= 1",
                         "write e.g. --threads 4 or --threads 1,4")
    return sorted({int(w) for w in items})


def start_node(address: str | None = None, *, head: bool = False, port: int = 6379, node_ip: str | None = None,
               threads=None, name: str | None = None, num_cpus: int | None = None,
               object_store_bytes: int | None = None, temp_dir: str | None = None,
               measure: bool = True, extra_env: dict | None = None) -> dict:
    """Start a Ray node on this machine advertising its dnnbench setup; return what it advertises.

    ``head``: start the cluster's head (at ``node_ip``:``port``); else join the head at ``address``. ``measure``
    False: a head that only coordinates (no dnnbench resources). The node keeps running after this returns.
    """
    from dnnbench.host import environment

    require_ray()
    if not head and not address:
        raise InputError("node start needs --address or --head", "a node joins the head of a Ray cluster",
                         "pass --address HEAD_IP:PORT (or --head on the machine that coordinates)")
    if name is not None and not _NAME_RE.fullmatch(name):
        raise InputError(f"--name {name!r} is not allowed", "a node name is up to 63 letters, digits, '.', '_' "
                         "or '-'", "write e.g. --name jetson-tx1-a")
    if address:
        host, _ = split_address(address)
        node_ip = node_ip or ("127.0.0.1" if is_loopback(host) else None)
    ts = parse_threads(threads)
    fp = environment.capture("cpu").fingerprint
    resources = node_resources(fp, ts, name) if measure else {}
    argv = ["start", "--disable-usage-stats"]
    argv += ["--head", "--port", str(port), "--include-dashboard", "false"] if head else ["--address", address]
    if node_ip:
        argv += ["--node-ip-address", node_ip]
    if resources:
        argv += ["--resources", json.dumps(resources)]
    if num_cpus is not None:
        argv += ["--num-cpus", str(num_cpus)]
    if object_store_bytes is not None:
        argv += ["--object-store-memory", str(object_store_bytes)]
    if temp_dir:
        argv += ["--temp-dir", temp_dir]
    if name:
        argv += ["--node-name", name]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(extra_env or {})}
    out = subprocess.run([sys.executable, "-c", "import sys; from dnnbench.fleet import ray_main; "
                          "ray_main(sys.argv[1:])", *argv], env=env, capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        lines = [ln for ln in (out.stderr + out.stdout).splitlines() if ln.strip()]
        why = next((ln for ln in reversed(lines) if "rror" in ln or "ailed" in ln), lines[-1] if lines else "")
        raise UnavailableError("ray start failed", why.strip()[:300],
                               "check that the head is running at that address and reachable from here"
                               if not head else "check that the port is free (or pass --port)")
    where = f"{node_ip or socket.gethostname()}:{port}" if head else address
    return {"address": where, "fingerprint": fp, "threads": ts, "resources": resources, "head": head}


def ray_main(argv: list[str]) -> None:
    """Ray's own ``ray`` command line; with a loopback ``--node-ip-address`` every Ray process stays on it."""
    ip = argv[argv.index("--node-ip-address") + 1] if "--node-ip-address" in argv else None
    if ip and is_loopback(ip):
        os.environ[LOOPBACK_ENV] = "0"  # inherited by the raylet, its workers and agents: loopback resolves to itself
        from ray._private import ray_constants, services

        ray_constants.ENABLE_RAY_CLUSTER = True  # in this process only: `ray start --address` is allowed
        services.resolve_ip_for_localhost = lambda host: host  # ...and keeps 127.0.0.1 as given
    from ray.scripts.scripts import main

    sys.argv = ["ray", *argv]
    main()


def stop_node() -> str:
    """Stop every Ray process of this machine (``ray stop``)."""
    require_ray()
    out = subprocess.run([sys.executable, "-c", "import sys; from dnnbench.fleet import ray_main; "
                          "ray_main(sys.argv[1:])", "stop"], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if "stopped" in ln.lower()]
    return (lines[-1].split("--", 1)[-1].strip() if lines else "no Ray process was running")


# -- the driver side ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FleetSetup:
    """One target setup: a machine fingerprint measured at a thread count, on one or more nodes."""

    fingerprint: str
    threads: int
    nodes: tuple[str, ...]  # Ray node ids
    name: str  # readable: node name or CPU/GPU model, threads
    cpu_model: str | None = None
    gpu_name: str | None = None
    cuda: bool = False
    hostnames: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.fingerprint}:t{self.threads}"

    @property
    def resource(self) -> str:
        return f"{SETUP}{self.key}"


@dataclass
class SetupProgress:
    setup: FleetSetup
    planned: int = 0
    stored_before: int = 0
    shared: int = 0  # profile cells measured for another setup of the same machine (their id has no threads)
    todo: int = 0
    done: int = 0  # tasks finished (measured, found stored, or failed)
    measured: int = 0
    failed: int = 0
    left: int = 0
    lost: list[str] = field(default_factory=list)  # why tasks ended without a cell
    cell_s: float = 0.0  # the cells' own time (record start to finish)


@dataclass
class FleetSummary:
    store: str
    address: str
    setups: list[SetupProgress]
    planned: int = 0
    skipped_existing: int = 0
    measured: int = 0
    failed: int = 0
    left: int = 0
    retried: int = 0
    stopped: str | None = None
    unavailable: list[tuple[str, str]] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    cell_s: float = 0.0


def _describe() -> dict:
    """What a node is (runs on it): identity, readable names, whether it has a CUDA GPU, the software."""
    from dnnbench.core.version import __version__
    from dnnbench.host import environment

    env = environment.capture("cpu")
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except Exception:
        cuda = False
    return {"fingerprint": env.fingerprint, "cpu_model": env.cpu_model, "gpu_name": env.gpu_name, "cuda": cuda,
            "hostname": env.hostname, "version": __version__, "pid": os.getpid()}


def _remote_study(models: list[str], config, store: str, only, owner: str | None, cwd: str | None,
                  warm: bool = False) -> dict:
    """Run on a node: ``runner.study`` for ``only`` (None: plan only); what was planned, measured, stored.

    ``cwd``: the driver's working directory, where relative ``python:`` model files are found (the same
    checkout path on every node); used when it exists here. ``warm`` (plan only): then start the fork server
    for the first planned bench cell, so that this process's first cell does not wait for it.
    """
    from dnnbench import api, runner

    out: dict = {"plans": [], "unavailable": [], "results": [], "hostname": socket.gethostname(),
                 "node": _node_id()}
    records = {}
    first_bench: list[dict] = []

    def grab(kind, data):
        if kind == "open":
            bench = [p for p in data["plans"] if "bench_plan" in p.config]
            if warm and bench:
                first_bench.append(bench[0].config)
            out["unavailable"] = list(data["unavailable"])
            out["plans"] = [{"cell_id": p.cell_id, "label": p.label, "ref": p.ref, "group": p.group,
                             "batch_size": p.batch_size, "runtime": p.config.get("runtime"),
                             "precision": p.config.get("precision")} for p in data["plans"]]
        elif kind == "done":
            rec = data["row"].record
            records[rec.cell_id] = {"cell_id": rec.cell_id, "status": rec.status, "stored": data["stored"],
                                    "message": rec.message, "cell_s": _duration(rec.started_at, rec.finished_at)}
        elif kind == "claimed":
            records[data["plan"].cell_id] = {"cell_id": data["plan"].cell_id, "status": None, "stored": False,
                                             "message": f"claimed by {data['holder']}", "cell_s": 0.0}
    old = os.getcwd()
    try:
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        s = runner.study(models, config, store=store, on_event=grab, only=frozenset(only or ()), owner=owner)
    except DnnbenchError as exc:
        out["error"] = exc.one_line()
        return out
    finally:
        os.chdir(old)
    for c in first_bench:
        api.prestart(c["bench_plan"], c["bench_config"])
    out["results"] = list(records.values())
    out["interrupted"] = s.stopped == "interrupted"
    return out


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:
        return None


def _duration(start, end) -> float:
    from datetime import datetime

    try:
        return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except (TypeError, ValueError):
        return 0.0


def connect(address: str):
    """Connect this process to the Ray cluster at ``address`` (one-line errors); return the ray module."""
    host, port = split_address(address)
    loopback = is_loopback(host)
    ray = require_ray(loopback)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        raise UnavailableError(f"cannot reach the Ray cluster at {address}", exc.strerror or str(exc),
                               "start its head with `dnnbench node start --head` (or `ray start --head`) and "
                               "pass its HOST:PORT") from exc
    if ray.is_initialized():
        return ray
    _route_ray_messages()
    kwargs = {"_node_ip_address": "127.0.0.1"} if loopback else {}
    try:
        ray.init(address=f"{host}:{port}", log_to_driver=False, logging_level="ERROR", namespace="dnnbench",
                 **kwargs)
    except Exception as exc:  # ConnectionError, RuntimeError: not a Ray head, or another Ray version
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UnavailableError(f"cannot join the Ray cluster at {address}", first,
                               "check it is a Ray head of the same Ray version as here") from exc
    return ray


_RAY_SINK: list[Callable[[str], None]] = []  # where Ray's messages to this driver go during a fleet study


def _route_ray_messages() -> None:
    """Ray prints the errors it pushes to a driver ("(raylet) Task ... will be retried", "A worker died") on
    stdout, where they would mix with the summary and ``--json`` output: they go to the fleet study's events
    (``ray-message``), else to stderr. (``ray._private.worker.print_to_stdstream`` is looked up per message.)"""
    try:
        from ray._private import worker as ray_worker
    except ImportError:
        return

    def sink(data, ignore_prefix=False):
        for line in data.get("lines", []):
            for f in list(_RAY_SINK) or [lambda text: print(f"ray: {text}", file=sys.stderr)]:
                f(str(line))

    ray_worker.print_to_stdstream = sink


def discover(ray, timeout_s: float = 120.0) -> list[dict]:
    """The alive dnnbench nodes: Ray's view (resources) joined with each node's own description."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    alive = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(NODE)]
    describe = ray.remote(num_cpus=0, max_retries=0)(_describe)
    refs = [describe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in alive]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
    out = []
    for n, ref in zip(alive, refs):
        res = n["Resources"]
        info = {"node_id": n["NodeID"], "address": n.get("NodeManagerAddress"), "name": next(
            (k[len(NAME):] for k in res if k.startswith(NAME)), None),
            "setups": sorted((k[len(SETUP):].rsplit(":t", 1)[0], int(k.rsplit(":t", 1)[1]))
                             for k in res if k.startswith(SETUP)), "alive": True}
        if ref in ready:
            try:
                info.update(ray.get(ref))
            except Exception as exc:  # dnnbench is not importable there, or the node died meanwhile
                info["problem"] = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
        else:
            info["problem"] = f"did not answer within {timeout_s:.0f} s"
        stale = [fp for fp, _ in info["setups"] if info.get("fingerprint") and fp != info["fingerprint"]]
        if stale:
            info["problem"] = (f"advertises fingerprint {stale[0]} but is now {info['fingerprint']} (its hardware or "
                               "torch changed): restart it with `dnnbench node start`")
        out.append(info)
    return out


def setups_of(nodes: list[dict]) -> list[FleetSetup]:
    by_key: dict[tuple[str, int], list[dict]] = {}
    for n in nodes:
        if n.get("problem"):
            continue
        for fp, t in n["setups"]:
            by_key.setdefault((fp, t), []).append(n)
    out = []
    for (fp, t), ns in sorted(by_key.items()):
        first = ns[0]
        label = first.get("name") or first.get("gpu_name") or first.get("cpu_model") or fp[:8]
        if len(ns) > 1 and first.get("name"):
            label = "/".join(sorted({n.get("name") or "?" for n in ns}))
        out.append(FleetSetup(fp, t, tuple(n["node_id"] for n in ns), f"{label}, {t} threads", first.get("cpu_model"),
                              first.get("gpu_name"), bool(first.get("cuda")),
                              tuple(sorted({n.get("hostname") or "?" for n in ns}))))
    return out


def select(setups: list[FleetSetup], on: str | None) -> list[FleetSetup]:
    """``--on all|cpu|cuda|NAME``: all setups; those of nodes without / with a CUDA GPU; one named setup (its
    readable name, node name, fingerprint prefix or FINGERPRINT:tTHREADS)."""
    want = (on or "all").strip()
    if want == "all":
        chosen = setups
    elif want in ("cpu", "cuda"):
        chosen = [s for s in setups if s.cuda == (want == "cuda")]
    else:
        low = want.lower()
        chosen = [s for s in setups if low in (s.key.lower(), s.name.lower()) or s.fingerprint.startswith(low)
                  or low in s.name.lower().split(", ")[0].split("/")]
    if not chosen:
        have = "; ".join(f"{s.name} ({s.key})" for s in setups) or "none"
        raise InputError(f"no dnnbench node of the cluster matches --on {want}", f"its setups are: {have}",
                         "start a node with `dnnbench node start --address HEAD:PORT` on that machine, or pick "
                         "another --on (all, cpu, cuda or a setup's name)")
    return chosen


def at_threads(setups: list[FleetSetup], on: str | None, threads: int | None) -> list[FleetSetup]:
    """``--threads`` with ``--cluster``: only the setups that measure at that count (a one-line error if none)."""
    if not threads:
        return setups
    at = [s for s in setups if s.threads == threads]
    if not at:
        have = "; ".join(f"{s.name} ({s.key})" for s in setups)
        raise InputError(f"no dnnbench node of the cluster matches --on {on or 'all'} at {threads} threads",
                         f"its setups are: {have}", "leave --threads out (each node measures at the thread counts "
                         f"it advertises), or start a node with `dnnbench node start --threads {threads} --address "
                         "HEAD:PORT`")
    return at


def check_shared_store(url: str, nodes: list[dict]) -> None:
    """A SQLite file is one machine's: refused unless every node runs on this host."""
    if not url.startswith("sqlite"):
        return
    here = socket.gethostname()
    away = sorted({n.get("hostname") or "?" for n in nodes if n.get("hostname") != here})
    if away:
        raise InputError("a fleet study cannot share a SQLite store", f"nodes on {', '.join(away)} cannot write "
                         f"the file {url.split(':///', 1)[-1]} on {here}",
                         "pass --store postgresql+psycopg://USER@HOST/DB, a server every node reaches")


def study(models, config=None, *, cluster: str, on: str | None = "all", store: str | None = None,
          on_event: FleetEvent | None = None, **options) -> FleetSummary:
    """Run ``runner.study`` across the dnnbench nodes of the Ray cluster at ``cluster`` into one store.

    ``on``: which setups (see ``select``). The same resumability as a local study: stored cells are skipped, a
    re-run measures only what is missing. Returns per-setup counts; ``on_event`` gets "setups", "plan",
    "done" (one per task), "lost" and "end" events.
    """
    from dnnbench import runner
    from dnnbench.core.config import with_options
    from dnnbench.store.store import default_store_url, normalize_url

    cfg = with_options(runner.StudyConfig, config, options, "fleet.study")
    if isinstance(models, str):
        models = [models]
    if not models:
        raise InputError("no models given", "a study needs models or a set", "write e.g. dnnbench study paper")
    runner.parse_metrics(cfg.metrics)  # one-line errors before the cluster is reached
    budget_s = runner.parse_duration(cfg.budget)
    url = normalize_url(str(store).strip()) if store else default_store_url()
    emit = on_event or (lambda kind, data: None)
    t0 = time.perf_counter()
    ray = connect(cluster)
    sink = lambda text: emit("ray-message", {"text": text})  # noqa: E731
    _RAY_SINK.append(sink)
    try:
        return _study(ray, list(models), cfg, cluster, on, url, emit, budget_s, t0)
    finally:
        ray.shutdown()
        _RAY_SINK.remove(sink)


def _study(ray, models, cfg, cluster, on, url, emit, budget_s, t0) -> FleetSummary:
    from dnnbench import runner
    from dnnbench.store import open_store

    nodes = discover(ray)
    for n in nodes:
        if n.get("problem"):
            emit("node-problem", {"node": n})
    setups = at_threads(select(setups_of(nodes), on), on, cfg.threads)
    check_shared_store(url, [n for n in nodes if any(n["node_id"] in s.nodes for s in setups)])
    owner = f"fleet-{uuid.uuid4().hex}"
    with open_store(url) as st:
        runner.check_writable(st)
        summary = FleetSummary(st.where, cluster, [SetupProgress(s) for s in setups])
        emit("setups", {"setups": setups, "store": st.where})
        driver = _Fleet(ray, st, cfg, url, owner, summary, emit, budget_s, t0,
                        {n["node_id"]: n.get("name") or n["node_id"][:12] for n in nodes})
        todo: list = []
        try:
            if set(runner.parse_metrics(cfg.metrics)) - {"profile"}:
                driver.start_agents(setups, models)  # they warm while the study is planned
            todo = _todo(st, _plan(ray, setups, models, cfg, url, summary), cfg.force, summary)
            emit("plan", {"summary": summary})
            driver.run(todo)
        except KeyboardInterrupt:
            summary.stopped = "interrupted"
            driver.cancel_all("interrupted")
        finally:
            driver.close()
            try:
                st.release([c["cell_id"] for _, c in todo], owner)
            except Exception:
                pass
        final = st.statuses(c["cell_id"] for _, c in todo)
    for sp in summary.setups:
        sp.left = sum(1 for s, c in todo if s.key == sp.setup.key and final.get(c["cell_id"]) is None)
    summary.left = len({c["cell_id"] for _, c in todo if final.get(c["cell_id"]) is None})
    summary.wall_s = time.perf_counter() - t0
    summary.cell_s = sum(sp.cell_s for sp in summary.setups)
    emit("end", {"summary": summary})
    return summary


def _plan(ray, setups: list[FleetSetup], models: list[str], cfg, url: str, summary: FleetSummary):
    """Each setup's cells, planned on a node of it; [(setup, plan dict)]."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0, max_retries=MAX_RETRIES)(_remote_study)
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(s.nodes[0], soft=True))
            .remote(models, replace(cfg, threads=s.threads, budget=None), url, None, None, os.getcwd())
            for s in setups]
    out = []
    for s, sp, ref in zip(setups, summary.setups, refs):
        res = ray.get(ref)
        if res.get("error"):  # the same mistake a local study would report (unknown model, bad option)
            raise InputError(f"planning on {s.name} failed", res["error"].rstrip("."),
                             "fix the command; nothing was measured")
        summary.unavailable += [(f"{label} on {s.name}", why) for label, why in res["unavailable"]]
        for p in res["plans"]:
            out.append((s, p))
        sp.planned = len(res["plans"])
    return out


def _todo(st, plans, force: bool, summary: FleetSummary):
    stored = st.statuses(p["cell_id"] for _, p in plans)
    seen: set[str] = set()
    todo = []
    by_key = {sp.setup.key: sp for sp in summary.setups}
    for s, p in plans:
        sp = by_key[s.key]
        status = stored.get(p["cell_id"])
        if not force and status not in (None, "error"):
            sp.stored_before += 1
            continue
        if p["cell_id"] in seen:  # a profile cell two setups of one machine share (threads are not in its id)
            sp.shared += 1
            continue
        seen.add(p["cell_id"])
        sp.todo += 1
        todo.append((s, p))
    summary.planned = len({p["cell_id"] for _, p in plans})
    summary.skipped_existing = summary.planned - len(todo)
    return todo


class _Agent:
    """A node's one measuring process for one fleet study: a Ray actor that holds the node's ``dnnbench-slot``
    while the study runs. Every measured and accuracy cell of the node runs here, one at a time, so two
    measurements never share the machine, and the process — its imports, its store connection, its fork server
    with torch resident — stays warm from one cell to the next."""

    def __init__(self, cwd: str | None):
        self.cwd = cwd

    def warm(self, models: list[str], config, store: str) -> dict:
        """Plan ``models`` here (imports what their cells import) and start the fork server for the first bench
        cell, while the driver runs static profiles; who and where this process is."""
        res = _remote_study(models, config, store, None, None, self.cwd, warm=True)
        return {"pid": os.getpid(), "node": _node_id(), "hostname": res["hostname"], "error": res.get("error")}

    def measure(self, models: list[str], config, store: str, only, owner: str) -> dict:
        return _remote_study(models, config, store, only, owner, self.cwd)


@dataclass
class _Job:
    setup: FleetSetup
    plan: dict
    attempts: int = 0  # runs that ended with the node's agent dead
    why: str = ""  # how the last one ended


class _Fleet:
    """Static profiles as Ray tasks in parallel (any node of their machine); then every measured cell through
    its node's agent, one at a time per node, each node taking the next cell of its setups as it finishes one.

    An agent that dies (its node lost, its process killed) hands its cell back to the setup's queue, for
    another node of the setup (``MAX_RETRIES`` times at most); a setup with no agent left has its queued
    cells left for the next run. The retry takes over the claim (one claims owner per fleet study) and skips
    the cell if it was committed before the node died (``Store.put`` is idempotent by cell id).
    """

    def __init__(self, ray, st, cfg, url, owner, summary: FleetSummary, emit, budget_s, t0, names=None):
        self.ray, self.st, self.cfg, self.url, self.owner = ray, st, cfg, url, owner
        self.names: dict[str, str] = names or {}
        self.summary, self.emit, self.budget_s, self.t0 = summary, emit, budget_s, t0
        self.by_key = {sp.setup.key: sp for sp in summary.setups}
        self.pending: dict = {}  # ObjectRef -> ("profile", job) | ("cell", node, job) | ("warm", node)
        self.queues: dict[str, deque] = {k: deque() for k in self.by_key}
        self.agents: dict[str, object] = {}  # node id -> actor handle, while it lives
        self.idle: list[str] = []  # nodes whose agent is warm and has no cell
        self.node_keys: dict[str, set[str]] = {}  # node id -> the keys of its target setups
        self.asked: dict[str, float] = {}  # node id -> when its agent was created (until it answers)
        self.waiting_said: set[str] = set()
        self.stopping: str | None = None
        self.task = ray.remote(_remote_study)

    # -- what a cell runs with -------------------------------------------------------------------------------
    def cell_config(self, job: _Job):
        s, p = job.setup, job.plan
        cfg = replace(self.cfg, threads=s.threads, budget=None, batch_sizes=(p["batch_size"],))
        if p["group"] in ("profile", "accuracy"):
            return replace(cfg, metrics=p["group"])
        return replace(cfg, metrics=p["group"].replace("+", ","), runtimes=p["runtime"], precisions=p["precision"])

    def submit_profile(self, job: _Job) -> None:
        opts = {"num_cpus": 1, "resources": {f"{MACHINE}{job.setup.fingerprint}": 1}}
        ref = self.task.options(max_retries=MAX_RETRIES, retry_exceptions=False, **opts).remote(
            [job.plan["ref"]], self.cell_config(job), self.url, [job.plan["cell_id"]], self.owner, os.getcwd())
        self.pending[ref] = ("profile", job)

    def start_agents(self, setups: list[FleetSetup], models: list[str]) -> None:
        """An agent on every node of ``setups``, warming (planning ``models`` there, starting its fork server)
        while the driver plans and the profiles run."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        agent = self.ray.remote(_Agent)
        for s in setups:
            for node in s.nodes:
                self.node_keys.setdefault(node, set()).add(s.key)
                if node in self.agents:
                    continue
                handle = agent.options(num_cpus=0, resources={SLOT: 1}, max_restarts=0, max_task_retries=0,
                                       scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
                                       ).remote(os.getcwd())
                self.agents[node] = handle
                self.asked[node] = time.perf_counter()
                ref = handle.warm.remote(models, replace(self.cfg, threads=s.threads, budget=None), self.url)
                self.pending[ref] = ("warm", node)

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self, todo) -> None:
        for s, p in todo:
            job = _Job(s, p)
            if p["group"] == "profile":
                self.submit_profile(job)
            else:
                self.queues[s.key].append(job)
        for node in list(self.agents):  # nothing to measure there: its slot is free for other studies
            if not any(self.queues[k] for k in self.node_keys.get(node, ())):
                self.release_agent(node)
        while True:
            if not self.stopping and not any(v[0] == "profile" for v in self.pending.values()):
                self.feed()  # measured cells once the profiles are done: nothing else runs beside a measurement
            self.leave_orphans()
            if not self.pending:
                return
            ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=1.0)
            for ref in ready:
                self.finish(ref)
            now = time.perf_counter()
            if not self.stopping and self.budget_s is not None and now - self.t0 > self.budget_s:
                self.stopping = self.summary.stopped = "budget"  # cells in progress finish; no new one starts
                self.leave_queued("the budget is spent: left for the next run")
            for node, since in self.asked.items():
                if now - since > 20.0 and node not in self.waiting_said:
                    self.waiting_said.add(node)
                    self.emit("node-wait", {"node": node, "name": self.names.get(node, node[:12]),
                                            "why": "its measuring slot is not free yet (another study measures "
                                                   "there, or the node is still starting): waiting"})

    def feed(self) -> None:
        for node in list(self.idle):
            job = next((q.popleft() for q in self.queues.values() if q and node in q[0].setup.nodes), None)
            if job is None:
                continue
            self.idle.remove(node)
            if job.attempts:
                self.summary.retried += 1
                self.emit("retry", {"setup": job.setup, "plan": job.plan, "why": job.why,
                                    "name": self.names.get(node, node[:12])})
            ref = self.agents[node].measure.remote([job.plan["ref"]], self.cell_config(job), self.url,
                                                   [job.plan["cell_id"]], self.owner)
            self.pending[ref] = ("cell", node, job)

    def finish(self, ref) -> None:
        what = self.pending.pop(ref)
        if what[0] == "warm":
            node = what[1]
            self.asked.pop(node, None)
            try:
                res = self.ray.get(ref)
            except Exception as exc:  # the node died, or its agent could not start there
                self.drop_agent(node, _why(exc))
                return
            if res.get("error"):  # the node cannot plan what the driver's planning node planned
                self.drop_agent(node, res["error"])
                return
            self.idle.append(node)
            return
        job = what[-1]
        try:
            res = self.ray.get(ref)
        except Exception as exc:
            if what[0] == "cell" and not _died(exc):  # the call failed, the agent lives (a bug, not the node)
                self.idle.append(what[1])
                why = _why(exc)
            elif what[0] == "cell":
                self.drop_agent(what[1], _why(exc))
                if self.stopping is None and job.attempts < MAX_RETRIES:
                    job.attempts += 1
                    job.why = _why(exc)
                    self.queues[job.setup.key].appendleft(job)  # another node of the setup takes it
                    return
                why = ("interrupted before it finished: left for the next run" if self.stopping == "interrupted"
                       else _why(exc, job.attempts + 1))
            else:
                why = _why(exc, MAX_RETRIES + 1)
            self.lose(job, why)
            return
        if what[0] == "cell":
            self.idle.append(what[1])
        self.result(job, res)

    def result(self, job: _Job, res: dict) -> None:
        s, p = job.setup, job.plan
        sp = self.by_key[s.key]
        if res.get("error"):
            sp.failed += 1
            self.lose(job, res["error"])
            return
        result = next((r for r in res["results"] if r["cell_id"] == p["cell_id"]), None)
        where = {"hostname": res.get("hostname"), "node": res.get("node")}
        if result is None and res.get("interrupted"):
            self.lose(job, "interrupted before it finished: left for the next run")
            return
        sp.done += 1
        if result is None:
            planned = any(q["cell_id"] == p["cell_id"] for q in res["plans"])
            why = ("stored meanwhile (by another study, or by this study before its node died)" if planned else
                   "the node no longer plans this cell (its software changed since planning): run the study again")
            self.emit("done", {"setup": s, "plan": p, "status": None, "stored": False, "why": why, "cell_s": 0.0,
                               **where})
            return
        sp.cell_s += result["cell_s"]
        if result["stored"]:
            sp.measured += 1
            self.summary.measured += 1
            self.summary.statuses[result["status"]] = self.summary.statuses.get(result["status"], 0) + 1
            if result["status"] != "ok":
                sp.failed += 1
                self.summary.failed += 1
        self.emit("done", {"setup": s, "plan": p, "status": result["status"], "stored": result["stored"],
                           "why": result["message"], "cell_s": result["cell_s"], **where})

    def lose(self, job: _Job, why: str) -> None:
        sp = self.by_key[job.setup.key]
        sp.done += 1
        sp.lost.append(f"{job.plan['label']} b={job.plan['batch_size']} {job.plan['group']}: {why}")
        self.emit("lost", {"setup": job.setup, "plan": job.plan, "why": why})

    def drop_agent(self, node: str, why: str) -> None:
        if node not in self.agents:
            return
        self.release_agent(node)
        if self.stopping != "interrupted":
            self.emit("node-lost", {"node": node, "name": self.names.get(node, node[:12]), "why": why})

    def leave_orphans(self) -> None:
        """Queued cells of a setup that has no agent left (each of its nodes died or could not start one)."""
        for key, q in self.queues.items():
            if q and not any(n in self.agents for n in q[0].setup.nodes):
                while q:
                    self.lose(q.popleft(), "no node of its setup is left: left for the next run")

    def leave_queued(self, why: str) -> None:
        for q in self.queues.values():
            while q:
                self.lose(q.popleft(), why)

    def cancel_all(self, why: str) -> None:
        """Ctrl-C: profiles cancelled, agents killed (a cell in progress is lost, never half stored); what was
        committed stays."""
        self.stopping = "interrupted"
        self.leave_queued("interrupted: left for the next run")
        for ref, what in list(self.pending.items()):
            if what[0] == "profile":
                try:
                    self.ray.cancel(ref, force=False)
                except Exception:
                    pass
        for node in list(self.agents):
            self.drop_agent(node, why)
        deadline = time.perf_counter() + 30.0
        while self.pending and time.perf_counter() < deadline:
            ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=1.0)
            for ref in ready:
                self.finish(ref)

    def release_agent(self, node: str) -> None:
        handle = self.agents.pop(node)
        if node in self.idle:
            self.idle.remove(node)
        self.asked.pop(node, None)
        for ref, what in list(self.pending.items()):
            if what == ("warm", node):
                del self.pending[ref]
        try:
            self.ray.kill(handle)
        except Exception:
            pass

    def close(self) -> None:
        """The study is over: its agents exit and free their nodes' slots."""
        for node in list(self.agents):
            self.release_agent(node)


def _died(exc: BaseException) -> bool:
    """The agent's process or node is gone (worth a retry elsewhere), as opposed to a bug in the cell."""
    name = type(exc).__name__
    return any(k in name for k in ("ActorDied", "ActorUnavailable", "RayActorError", "NodeDied", "WorkerCrashed",
                                   "OwnerDied", "ActorUnschedulable"))


def _why(exc: BaseException, times: int | None = None) -> str:
    name = type(exc).__name__
    if "Cancel" in name:
        return "cancelled (the budget was spent, or Ctrl-C): left for the next run"
    if _died(exc):
        where = f" {times} times" if times and times > 1 else ""
        return f"its node or measuring process died{where} ({name}): left for the next run"
    first = (str(exc).strip().splitlines() or [name])[0][:200]
    return f"{name}: {first}"


def list_nodes(address: str) -> list[dict]:
    """The dnnbench nodes of the cluster at ``address`` with their setups (``dnnbench node list``)."""
    ray = connect(address)
    try:
        return discover(ray)
    finally:
        ray.shutdown()
