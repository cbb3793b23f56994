"""The fleet driver's decisions (which node measures what, retries, what is left), against a fake Ray.

The real cluster is in test_fleet.py (slow); here every Ray call answers at once, and each agent's answer is
scripted per node, so that each rule is checked on its own: a dead agent's cell goes to another node of
its setup, a failing call keeps the agent, a setup without nodes has its cells left, a spent budget starts
no new cell, and profiles run before any measured cell.
"""

from __future__ import annotations

import pytest

pytest.importorskip("ray", reason="ray is not installed: pip install 'dnnbench[fleet]'")

from dnnbench import fleet, runner  # noqa: E402


class ActorDiedError(Exception):
    """Named like Ray's: the agent's process or node is gone."""


class Ref:
    def __init__(self, answer):
        self.answer = answer


class FakeRay:
    """Ray's calls as the driver makes them; ``script(kind, node, only)`` answers a call (or raises)."""

    def __init__(self, script):
        self.script = script
        self.calls: list[tuple[str, str, tuple]] = []  # (kind, node, cell ids), in the order they ran
        self.killed: list[str] = []

    def remote(self, target):
        return Agent(self) if target is fleet._Agent else Task(self)

    def wait(self, refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return ref.answer()

    def kill(self, handle):
        self.killed.append(handle.node)

    def cancel(self, ref, force=False):
        pass

    def call(self, kind, node, only):
        def answer():
            self.calls.append((kind, node, tuple(only or ())))
            return self.script(kind, node, only)
        return Ref(answer)


class Task:
    def __init__(self, ray):
        self.ray = ray

    def options(self, **_):
        return self

    def remote(self, models, cfg, url, only, owner, cwd):
        return self.ray.call("profile", "any", only)


class Agent:
    def __init__(self, ray, node=None):
        self.ray, self.node = ray, node

    def options(self, scheduling_strategy=None, **_):
        return Agent(self.ray, scheduling_strategy.node_id)

    def remote(self, cwd):
        ray, node = self.ray, self.node

        class Handle:
            pass

        h = Handle()
        h.node = node
        h.warm = type("M", (), {"remote": staticmethod(lambda *a: ray.call("warm", node, None))})
        h.measure = type("M", (), {"remote": staticmethod(lambda m, c, u, only, o: ray.call("measure", node, only))})
        return h


def stored(node, only):
    return {"plans": [], "hostname": "h", "node": node,
            "results": [{"cell_id": c, "status": "ok", "stored": True, "message": "", "cell_s": 0.5} for c in only]}


A, B = "a" * 56, "b" * 56  # Ray node ids (hex)
SETUP = fleet.FleetSetup("f" * 16, 1, (A, B), "box, 1 threads")


def plan(i: int, group: str = "time") -> dict:
    return {"cell_id": f"c{i}", "label": "tiny", "ref": "tiny", "group": group, "batch_size": i,
            "runtime": "eager", "precision": "fp32"}


def drive(script, plans, budget_s=None, setups=(SETUP,)):
    ray = FakeRay(script)
    summary = fleet.FleetSummary("store", "addr", [fleet.SetupProgress(s) for s in setups])
    events = []
    driver = fleet._Fleet(ray, None, runner.StudyConfig(metrics="time"), "sqlite:///x.db", "owner", summary,
                          lambda kind, data: events.append((kind, data)), budget_s, 0.0 if budget_s is None
                          else __import__("time").perf_counter(), {A: "a", B: "b"})
    driver.start_agents(list(setups), ["tiny"])
    driver.run([(setups[0], p) for p in plans])
    driver.close()
    return ray, summary, events


def ok_script(kind, node, only):
    return {"pid": 1, "node": node, "hostname": "h", "error": None} if kind == "warm" else stored(node, only)


def test_cells_are_shared_between_the_nodes_of_a_setup_one_at_a_time_each():
    ray, summary, _ = drive(ok_script, [plan(i) for i in range(1, 5)])
    measured = [(node, only) for kind, node, only in ray.calls if kind == "measure"]
    assert sorted(c for _, (c,) in measured) == ["c1", "c2", "c3", "c4"]  # each cell once, one per call
    assert {node for node, _ in measured} == {A, B}
    assert summary.measured == 4 and summary.retried == 0
    assert sorted(ray.killed) == sorted([A, B])  # the agents are stopped at the end: the slots are free again


def test_a_dead_agents_cell_is_measured_by_another_node_of_the_setup():
    def script(kind, node, only):
        if kind == "measure" and node == A:
            raise ActorDiedError("the actor died because its node died")
        return ok_script(kind, node, only)

    ray, summary, events = drive(script, [plan(1), plan(2)])
    measured = [(node, only) for kind, node, only in ray.calls if kind == "measure"]
    assert measured[0] == (A, ("c1",)) and (B, ("c1",)) in measured  # c1 again, on B
    assert summary.measured == 2 and summary.retried == 1 and not summary.setups[0].lost
    assert [k for k, _ in events].count("node-lost") == 1 and A in ray.killed
    assert any(k == "retry" and d["name"] == "b" for k, d in events)


def test_a_failing_call_keeps_its_agent_and_loses_only_its_cell():
    def script(kind, node, only):
        if kind == "measure" and only == ["c1"]:
            raise RuntimeError("a bug in the cell")
        return ok_script(kind, node, only)

    ray, summary, events = drive(script, [plan(1), plan(2), plan(3)], setups=(fleet.FleetSetup("f" * 16, 1, (A,),
                                                                                               "box, 1 threads"),))
    assert summary.measured == 2 and summary.retried == 0
    assert summary.setups[0].lost == ["tiny b=1 time: RuntimeError: a bug in the cell"]
    assert [node for kind, node, _ in ray.calls if kind == "measure"] == [A, A, A]
    assert not any(k == "node-lost" for k, _ in events)


def test_cells_are_left_once_no_node_of_their_setup_is_left():
    def script(kind, node, only):
        if kind == "measure":
            raise ActorDiedError("gone")
        return ok_script(kind, node, only)

    ray, summary, _ = drive(script, [plan(1), plan(2), plan(3)])
    sp = summary.setups[0]
    assert summary.measured == 0 and sp.done == 3 and len(sp.lost) == 3
    # the two cells in progress went back to the queue when their nodes died; with no node left, all are left
    assert all("no node of its setup is left" in why for why in sp.lost), sp.lost
    assert [(node, only) for kind, node, only in ray.calls if kind == "measure"] == [(A, ("c1",)), (B, ("c2",))]


def test_a_node_that_cannot_plan_measures_nothing():
    def script(kind, node, only):
        if kind == "warm" and node == A:
            return {"pid": 1, "node": node, "hostname": "h", "error": "unknown model tiny: not on this node"}
        return ok_script(kind, node, only)

    ray, summary, events = drive(script, [plan(1), plan(2)])
    assert {node for kind, node, _ in ray.calls if kind == "measure"} == {B} and summary.measured == 2
    assert any(k == "node-lost" and "unknown model" in d["why"] for k, d in events)


def test_a_spent_budget_starts_no_new_cell():
    ray, summary, _ = drive(ok_script, [plan(i) for i in range(1, 6)], budget_s=0.0)
    started = [c for c in ray.calls if c[0] == "measure"]
    assert summary.stopped == "budget" and summary.measured == len(started) < 5
    assert sum("budget" in why for why in summary.setups[0].lost) == 5 - len(started)


def test_profiles_run_before_any_measured_cell():
    ray, summary, _ = drive(ok_script, [plan(1), plan(2, "profile"), plan(3), plan(4, "profile")])
    kinds = [k for k, _, _ in ray.calls if k in ("profile", "measure")]
    assert kinds == ["profile", "profile", "measure", "measure"] and summary.measured == 4
