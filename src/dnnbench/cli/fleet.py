"""`dnnbench node start|stop|list` (a machine joins a Ray cluster as a dnnbench node) and the fleet study's
progress view (`dnnbench study ... --cluster ADDRESS`). Ray is imported only here and in ``dnnbench.fleet``."""

from __future__ import annotations

import click

from dnnbench.cli.output import Command, err, fail, out
from dnnbench.core import units as u


class _Group(click.Group):
    command_class = Command


@click.group(cls=_Group)
def node():
    """This machine as a node of a Ray cluster that runs fleet studies (needs dnnbench[fleet])."""


@node.command("start")
@click.option("--address", default=None, metavar="HOST:PORT", help="The head of the Ray cluster to join.")
@click.option("--head", is_flag=True, help="Start the cluster's head here instead (it coordinates, and measures "
                                           "too unless --no-measure).")
@click.option("--port", type=int, default=6379, show_default=True, help="With --head: the port of the head.")
@click.option("--node-ip-address", "node_ip", default=None, metavar="IP",
              help="The address other nodes reach this one at [default: Ray's choice; 127.0.0.1 for a loopback "
                   "--address]. A loopback address keeps every Ray process on loopback.")
@click.option("--threads", default=None, metavar="T[,T]", help="Thread counts this node measures at [default: "
                                                              "physical cores]; each is a setup of its own.")
@click.option("--name", default=None, help="A readable name for this node's setup (letters, digits, . _ -).")
@click.option("--num-cpus", type=int, default=None, help="Ray CPUs of this node (static profiles use one each).")
@click.option("--object-store-memory", "object_store_bytes", type=int, default=None, metavar="BYTES",
              help="Ray's object store size [default: Ray's, 30 % of RAM]; fleet tasks move only small records.")
@click.option("--temp-dir", default=None, metavar="DIR", help="Ray's session and log folder (head only).")
@click.option("--measure/--no-measure", default=True, show_default=True,
              help="Advertise this node's measuring slot (a head that only coordinates: --no-measure).")
def start(address, head, port, node_ip, threads, name, num_cpus, object_store_bytes, temp_dir, measure):
    """Start a Ray node here that advertises this machine's dnnbench setup: its fingerprint, the thread
    counts it measures at, and one exclusive measuring slot (two measurements never share the machine).

    Start one node per machine; the node keeps running until `dnnbench node stop`.
    """
    from dnnbench import fleet

    info = fleet.start_node(address, head=head, port=port, node_ip=node_ip, threads=threads, name=name,
                            num_cpus=num_cpus, object_store_bytes=object_store_bytes, temp_dir=temp_dir,
                            measure=measure)
    what = "head" if head else "node"
    setups = ", ".join(f"{info['fingerprint']}:t{t}" for t in info["threads"]) if info["resources"] else "none"
    out.print(f"dnnbench {what} started; cluster {info['address']}; setups: {setups}")
    if head:
        out.print(f"join it from each machine with: dnnbench node start --address {info['address']}")


@node.command("stop")
def stop():
    """Stop the Ray processes of this machine (`ray stop`): cells in progress here are retried elsewhere."""
    from dnnbench import fleet

    out.print(fleet.stop_node())


@node.command("list")
@click.option("--address", required=True, metavar="HOST:PORT", help="The head of the Ray cluster.")
def list_(address):
    """The dnnbench nodes of a cluster: their setups (fingerprint, threads), host, CPU, GPU."""
    from dnnbench import fleet

    nodes = fleet.list_nodes(address)
    if not nodes:
        out.print(f"no dnnbench node in the cluster at {address}; start one with "
                  f"`dnnbench node start --address {address}`")
        return
    for n in nodes:
        setups = ", ".join(f"{fp}:t{t}" for fp, t in n["setups"]) or "none"
        gpu = f", GPU {n['gpu_name']}" if n.get("gpu_name") else ""
        problem = f"; problem: {n['problem']}" if n.get("problem") else ""
        out.print(f"{n.get('name') or n['node_id'][:12]}: host {n.get('hostname') or n.get('address')}, "
                  f"CPU {n.get('cpu_model') or 'unknown'}{gpu}; setups {setups}{problem}")



class progress:
    """One bar per target setup (cells done of planned, ETA) on stderr, fed by fleet.study's events."""

    def __init__(self):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=False)
        self.tasks: dict[str, int] = {}
        self.started = False

    def __enter__(self):
        return self.on_event

    def __exit__(self, *exc):
        if self.started:
            self.bar.stop()
        return False

    def on_event(self, kind, data) -> None:
        if kind == "node-problem":
            n = data["node"]
            err.print(f"node {n.get('name') or n['node_id'][:12]} is left out: {n['problem']}")
        elif kind == "setups":
            err.print(f"store: {data['store']}")
            for s in data["setups"]:
                err.print(f"setup {s.name} ({s.key}): {len(s.nodes)} node(s) on {', '.join(s.hostnames)}")
        elif kind == "plan":
            s = data["summary"]
            for label, why in s.unavailable:
                err.print(f"unavailable: {label}: {why}")
            if s.skipped_existing:
                err.print(f"{s.skipped_existing} cells already in the store: skipped (--force re-measures them)")
            for sp in s.setups:
                self.tasks[sp.setup.key] = self.bar.add_task(sp.setup.name, total=sp.todo)
            self.bar.start()
            self.started = True
        elif kind in ("node-lost", "node-wait"):
            err.print(f"node {data['name']}: {data['why']}", markup=False, highlight=False)
        elif kind == "retry":
            p = data["plan"]
            err.print(f"{p['label']} b={p['batch_size']} {p['group']} on {data['setup'].name}: retried on node "
                      f"{data['name']} ({data['why'].split(':')[0]})", markup=False, highlight=False)
        elif kind == "ray-message":
            first = (data["text"].strip().splitlines() or [""])[0]
            err.print(f"ray: {first[:200]}", markup=False, highlight=False, style="dim")
        elif kind in ("done", "lost"):
            task = self.tasks.get(data["setup"].key)
            if task is not None:
                self.bar.advance(task)
            p = data["plan"]
            if kind == "lost":
                err.print(f"{p['label']} b={p['batch_size']} {p['group']} on {data['setup'].name}: {data['why']}")
            elif data["status"] not in ("ok", None):
                err.print(f"{p['label']} b={p['batch_size']} {p['group']} on {data['setup'].name}: "
                          f"{data['status']}: {data['why']}")


def summary(s) -> None:
    statuses = ", ".join(f"{v} {k}" for k, v in sorted(s.statuses.items())) or "none"
    retried = f", {s.retried} retried on another node" if s.retried else ""
    out.print(f"fleet study: {s.measured} cells measured ({statuses}), {s.skipped_existing} already stored, "
              f"{s.left} left{retried}, in {u.seconds(s.wall_s)} on {len(s.setups)} setup(s); store: {s.store}")
    for sp in s.setups:
        shared = f", {sp.shared} profile cells shared with another setup of this machine" if sp.shared else ""
        out.print(f"  {sp.setup.name} ({sp.setup.key}): {sp.planned} planned, {sp.stored_before} already stored, "
                  f"{sp.measured} measured, {sp.left} left{shared}")
        for why in sp.lost[:5]:
            out.print(f"    not stored: {why}")
        if len(sp.lost) > 5:
            out.print(f"    ... and {len(sp.lost) - 5} more")
    if s.stopped == "budget":
        out.print(f"stopped: the budget is spent; {s.left} cells left. Run the same command again to resume.")


def run_study(models, config, store, cluster, on) -> None:
    """`dnnbench study ... --cluster ADDRESS`: the study across the fleet, its progress and summary."""
    from dnnbench import fleet

    with progress() as on_event:
        s = fleet.study(list(models), config, cluster=cluster, on=on, store=store, on_event=on_event)
    summary(s)
    if s.stopped == "interrupted":
        fail(f"interrupted; {s.measured} finished cells are stored, {s.left} left. "
             "Run the same command again to resume.", 130)
    if s.left and s.stopped is None:
        fail(f"{s.left} cells were not stored (see above); run the same command again once their setup has a "
             "node (finished cells are kept).", 1)


__all__ = ["node", "run_study"]
