"""The chaos rehearsal's pure parts: the seeded generator and the invariant checks, on recorded
observations (lab/chaos_plan.py, lab/chaos_check.py). The runner itself is tested on the lab
(tests/lab/test_chaos_lab.py)."""

import random

import pytest

from lab.chaos_check import (check_diagnosis, check_interrupt, check_lb, check_recover,
                             check_writes, final_line, once_per_step, report_lines)
from lab.chaos_plan import (FAULTS, INTERRUPTS, OPERATOR, STEP_KINDS, describe, draw_plan,
                            fault_kinds_drawn)

# --------------------------------------------------------------------------- the generator


def test_plan_is_a_pure_function_of_the_seed():
    a = draw_plan(42, 50)
    # other random draws in between change nothing: the plan has its own generator
    random.seed(0)
    random.random()
    assert draw_plan(42, 50) == a
    assert draw_plan(43, 50) != a


def test_a_longer_plan_starts_with_the_shorter_one():
    assert draw_plan(5, 30)[:10] == draw_plan(5, 10)


def test_plan_numbers_steps_and_keeps_to_the_kinds():
    plan = draw_plan(3, 40, kinds=("interrupt", "operator"))
    assert [s["n"] for s in plan] == list(range(1, 41))
    assert {s["kind"] for s in plan} <= {"interrupt", "operator"}


def test_plan_refuses_unknown_kinds():
    with pytest.raises(ValueError, match="bogus"):
        draw_plan(1, 3, kinds=("fault", "bogus"))


def test_faults_cover_every_lab_fault_kind_on_its_hosts():
    assert ("db01", "postgres") in FAULTS and ("lb01", "postgres") not in FAULTS
    assert ("lb02", "httpd") in FAULTS and ("db02", "httpd") not in FAULTS
    assert {k for _, k in FAULTS} == {"power", "network", "heartbeat", "pgpool", "postgres",
                                      "httpd"}
    assert len(FAULTS) == 4 * 3 + 2 * 2 + 2


def test_a_long_plan_draws_every_kind_of_step():
    plan = draw_plan(11, 600)
    drawn = fault_kinds_drawn(plan)
    for _, kind in FAULTS:
        assert drawn.get(f"fault:{kind}", 0) > 0
    for task, method, _ in INTERRUPTS:
        for sig in ("INT", "KILL"):
            assert drawn.get(f"interrupt:{task}{'/' + method if method else ''}:SIG{sig}", 0) > 0
    for action in OPERATOR:
        assert drawn.get(f"operator:{action}", 0) > 0
    assert drawn.get("reboot", 0) > 0
    assert {s["kind"] for s in plan} == set(STEP_KINDS)


def test_double_faults_hit_two_hosts():
    for s in draw_plan(9, 300, kinds=("double",)):
        (h1, _), (h2, _) = s["faults"]
        assert h1 != h2


def test_delays_are_within_their_ranges():
    ranges = {(t, m): r for t, m, r in INTERRUPTS}
    for s in draw_plan(2, 200, kinds=("interrupt",)):
        lo, hi = ranges[(s["task"], s.get("method"))]
        assert lo <= s["delay"] <= hi


def test_describe_reads_like_the_commands():
    step = {"kind": "interrupt", "task": "sync.resync", "method": "online", "signal": "KILL",
            "delay": 3.5}
    assert describe(step) == "sync.resync --method online, SIGKILL after 3.5s"
    assert describe({"kind": "double", "faults": [["db01", "power"], ["lb02", "httpd"]]}) == (
        "lab.fault --host db01 --kind power + lab.fault --host lb02 --kind httpd")
    assert describe({"kind": "operator", "action": "crm-move", "group": "grp-pgpool"}) == (
        "crm_resource --move -r grp-pgpool")


# --------------------------------------------------------------------------- (1) writes


def test_writes_all_present():
    vs, lost = check_writes({"a", "b"}, {"db01": {"a", "b"}, "db02": {"a", "b", "c"}},
                            {"db01", "db02"})
    assert vs == [] and lost == set()


def test_write_missing_on_an_up_backend_is_a_violation_but_not_lost():
    vs, lost = check_writes({"a", "b"}, {"db01": {"a", "b"}, "db02": {"a"}}, {"db01", "db02"})
    assert [v["invariant"] for v in vs] == [1]
    assert "db02" in vs[0]["what"] and "'b'" in vs[0]["evidence"]
    assert lost == set()


def test_write_missing_on_a_down_backend_is_no_violation():
    vs, lost = check_writes({"a", "b"}, {"db01": {"a", "b"}, "db02": {"a"}}, {"db01"})
    assert vs == [] and lost == set()


def test_write_nowhere_is_lost_unless_kept():
    vs, lost = check_writes({"a", "s1"}, {"db01": {"a"}, "db02": {"a"}}, {"db01", "db02"})
    assert lost == {"s1"} and len(vs) == 2
    # after a split brain, a write kept in the salvage file the tool named is neither
    vs, lost = check_writes({"a", "s1"}, {"db01": {"a"}, "db02": {"a"}}, {"db01", "db02"},
                            kept={"db02:/var/lib/postgresql/15/salvage.sql": {"s1"}})
    assert lost == set() and vs == []


def test_unreadable_up_backend_is_a_violation():
    vs, _ = check_writes({"a"}, {"db01": {"a"}}, {"db01", "db02"})
    assert vs and "could not be read" in vs[0]["what"]


# --------------------------------------------------------------------------- (2) diagnosis

GOOD = {"nodes": {"db01": "online", "db02": "online"},
        "pool": [("0", "10.231.4.11", "up"), ("1", "10.231.4.12", "up")], "compare_equal": True}


def test_healthy_diagnosis_on_a_healthy_cluster():
    assert check_diagnosis({"pattern": "healthy"}, GOOD) == []


def test_a_named_failure_is_never_a_violation():
    bad = dict(GOOD, nodes={"db01": "offline", "db02": "online"})
    assert check_diagnosis({"pattern": "network", "host": "db01"}, bad) == []
    assert check_diagnosis(None, bad) == []


@pytest.mark.parametrize("change, words", [
    ({"nodes": {"db01": "standby", "db02": "online"}}, "db01 is standby"),
    ({"nodes": {"db01": "online", "db02": "offline"}}, "db02 is offline"),
    ({"pool": [("0", "db01", "up"), ("1", "db02", "down")]}, "degenerated"),
    ({"pool": None}, "does not answer"),
    ({"compare_equal": False, "compare_evidence": "GYOM_DB.orders"}, "GYOM_DB.orders"),
])
def test_healthy_diagnosis_on_a_sick_cluster_is_a_violation(change, words):
    vs = check_diagnosis({"pattern": "healthy"}, dict(GOOD, **change))
    assert [v["invariant"] for v in vs] == [2]
    assert words in vs[0]["evidence"]


# --------------------------------------------------------------------------- (3) recover


def test_recover_zero_on_healthy_is_fine():
    assert check_recover("db.recover", 0, 30, 900, [], "db cluster is healthy") == []


def test_recover_zero_on_unhealthy_is_a_violation():
    vs = check_recover("db.recover", 0, 30, 900, ["db02 is standby"], "done\nhealthy")
    assert [v["invariant"] for v in vs] == [3]
    assert "db02 is standby" in vs[0]["evidence"] and "healthy" in vs[0]["evidence"]


def test_recover_that_waits_in_vain_is_a_violation():
    vs = check_recover("db.recover", 6, 65, 900, ["pgpool stopped"], "waiting...")
    assert [v["invariant"] for v in vs] == [3] and "exit 6" in vs[0]["what"]


def test_recover_past_its_limit_is_a_violation():
    vs = check_recover("lb.recover", 3, 1000, 900, ["x"], "")
    assert "past its limit" in vs[0]["what"]


def test_recover_asking_a_human_is_fine():
    assert check_recover("db.recover", 3, 2, 900, ["maintenance-mode"], "needs a human") == []


def test_a_violation_seen_again_in_the_same_step_counts_once():
    counted = set()
    waited = check_recover("db.recover", 6, 65, 900, ["pgpool stopped"], "waiting...")
    new, again = once_per_step(4, waited, counted)
    assert (len(new), again) == (1, [])
    # the next recover round (or the hand repair's recover) waits in vain again: same finding
    waited2 = check_recover("db.recover", 6, 66, 900, ["pgpool stopped"], "waiting...")
    new, again = once_per_step(4, waited2, counted)
    assert new == [] and len(again) == 1
    # another finding in the same step, or the same finding at a later step, counts
    unhealthy = check_recover("db.recover", 0, 30, 900, ["db02 is standby"], "healthy")
    assert len(once_per_step(4, unhealthy, counted)[0]) == 1
    assert len(once_per_step(5, waited, counted)[0]) == 1


# --------------------------------------------------------------------------- (4) interrupts


def rec(event, action="sync.resync", **kw):
    return dict({"event": event, "action": action}, **kw)


def test_sigint_leaves_a_failed_record():
    records = [rec("start"), rec("checkpoint", step="plan"), rec("failed", message="interrupted")]
    assert check_interrupt("sync.resync", "INT", records, None,
                           "resync-interrupted: inv sync.resume or inv sync.rollback") == []


def test_sigint_without_an_end_record_is_a_violation():
    vs = check_interrupt("db.failover", "INT", [rec("start", "db.failover")], None, "")
    assert [v["invariant"] for v in vs] == [4]


def test_sigkill_needs_no_end_record():
    assert check_interrupt("db.failover", "KILL", [rec("start", "db.failover")], None, "") == []


def test_interrupted_resync_must_be_named_by_the_diagnosis():
    records = [rec("start"), rec("checkpoint", step="stop_pgpool")]
    vs = check_interrupt("sync.resync", "KILL", records, None,
                         "PGPOOL (db01)\nplan: wait: grp-pgpool started")
    assert [v["invariant"] for v in vs] == [4] and "stop_pgpool" in vs[0]["evidence"]


def test_resync_interrupted_inside_db_recover_must_be_named_too():
    records = [rec("start", "db.recover"), rec("checkpoint", step="keep_datadir", parent="x"),
               rec("failed", message="interrupted", parent="x"),
               rec("failed", "db.recover", message="interrupted")]
    vs = check_interrupt("db.recover", "INT", records, None, "PGPOOL (db01)")
    assert [v["invariant"] for v in vs] == [4] and "db.recover" in vs[0]["what"]
    assert check_interrupt("db.recover", "INT", records, None, "plan: inv sync.resume") == []


def test_finished_resync_needs_no_next_step():
    records = [rec("start"), rec("checkpoint", step="verify"), rec("done")]
    assert check_interrupt("sync.resync", "INT", records, None, "healthy") == []


def test_lock_held_by_a_dead_process_is_a_violation():
    lock = {"pid": 4242, "alive": False, "action": "pgpool.stop"}
    vs = check_interrupt("pgpool.stop", "KILL", [], lock, "")
    assert [v["invariant"] for v in vs] == [4] and "4242" in vs[0]["evidence"]
    assert check_interrupt("pgpool.stop", "KILL", [], dict(lock, alive=True), "") == []


# --------------------------------------------------------------------------- (5) LB


def test_lb_page_from_a_node_running_apache():
    assert check_lb("lb01", {"lb01"}, {"lb01", "lb02"}) == []


def test_lb_silent_while_apache_runs_is_a_violation():
    assert [v["invariant"] for v in check_lb(None, {"lb02"}, {"lb02"})] == [5]


def test_lb_page_from_a_node_without_apache_is_a_violation():
    vs = check_lb("lb01", {"lb02"}, {"lb01", "lb02"})
    assert "lb01" in vs[0]["what"]


def test_lb_nothing_online_nothing_to_check():
    assert check_lb(None, set(), set()) == []


# --------------------------------------------------------------------------- the report


def test_report_last_line_is_exact():
    lines = report_lines(7, 12, {"fault:power": 2}, [10.0, 20.0, 90.0], 345, {"s7e1-3"},
                         [{"invariant": 2, "what": "x", "evidence": "y", "step": 4}])
    assert lines[-1] == "chaos: 12 steps, 1 violations, 1 lost writes (345 acknowledged), seed 7"
    assert any("median 20.0s" in line for line in lines)
    assert any("seed=7 step=4 invariant 2" in line for line in lines)
    assert final_line(3, 0, 0, 10, 1) == "chaos: 3 steps, 0 violations, 0 lost writes (10 acknowledged), seed 1"
    notes = ["step 3: not recovered: db ['x'] []", "step 3: lab rebuilt", "step 5: lab error: y",
             "--duration 60s reached before step 9"]
    lines = report_lines(7, 9, {}, [], 0, set(), [], notes)
    assert "steps not recovered by hatasks alone: 2 (lab rebuilt: 1)" in lines


# --------------------------------------------------------------------------- the lock probe


def test_lock_probe_free_held_and_held_by_the_dead(tmp_path):
    import fcntl
    import json
    import subprocess
    import types

    from lab.chaos_probe import Operator

    op = Operator(types.SimpleNamespace(n=0, state=tmp_path), tmp_path / "state", lambda m: None)
    assert op.lock("db") is None
    path = tmp_path / "state" / "lock.db"
    path.write_text(json.dumps({"pid": 2 ** 22 + 7, "action": "sync.resync"}))
    assert op.lock("db") is None  # a body without a flock is no lock
    # a child holding the flock while the body names a pid that does not exist: the dead
    # owner's descriptor was inherited
    with open(path) as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        child = subprocess.Popen(["sleep", "30"], pass_fds=(f.fileno(),))
    try:
        info = op.lock("db")
        assert info["action"] == "sync.resync" and info["alive"] is False
        assert any(h.startswith(f"{child.pid}:sleep") for h in info["holders"])
    finally:
        child.kill()
        child.wait()
    assert op.lock("db") is None


def test_journal_records_by_pid(tmp_path):
    import json
    import types

    from lab.chaos_probe import Operator

    op = Operator(types.SimpleNamespace(n=0, state=tmp_path), tmp_path / "state", lambda m: None)
    lines = [{"pid": 1, "event": "start"}, {"pid": 2, "event": "start"}, {"pid": 1, "event": "failed"}]
    (tmp_path / "state" / "journal.jsonl").write_text(
        "\n".join(json.dumps(r) for r in lines) + "\nnot json\n")
    assert [r["event"] for r in op.records(pid=1)] == ["start", "failed"]
    assert len(op.records()) == 3


# --------------------------------------------------------------------------- the lab's view


class ViewLab:
    """The lab as Truth reads it: crm_mon per host (a dict, or None: the stack does not answer
    there), everything else healthy."""

    def __init__(self, mons):
        self.mons = mons

    def pid1(self, host):
        return 1

    def link_state(self, host):
        return "up"

    def crm_mon(self, host):
        from lab.base import LabError
        if self.mons.get(host) is None:
            raise LabError(f"{host}: crm_mon gave no XML: Connection refused")
        return self.mons[host]

    def hrun(self, host, script, check=False, timeout=None):
        import types
        return types.SimpleNamespace(stdout="", stderr="", returncode=0)

    def pool_nodes(self):
        return [("0", "db01", "up"), ("1", "db02", "up")]


def test_a_node_only_its_peer_sees_online_is_not_healthy():
    """chaos seed 11 step 9: db01's stack killed, db02 not yet noticing: the lab's view read on
    db02 said healthy. The node's own crm_mon decides."""
    from lab.chaos_probe import Truth
    mon = {"nodes": {"db01": "online", "db02": "online"}, "failures": [],
           "resources": {"db-vip": ["db01"], "pgpool": ["db01"]}}
    assert Truth(ViewLab({"db01": mon, "db02": mon})).problems("db") == []
    problems = Truth(ViewLab({"db01": None, "db02": mon})).problems("db")
    assert problems == ["db01 is online for db02, but crm_mon fails on db01 itself"]
