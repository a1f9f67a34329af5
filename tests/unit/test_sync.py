"""sync (the driver): the run loop over syncsteps.STEPS, its checkpoints and what a resume redoes.
The step functions are replaced by recorders; the loop itself is the real one."""

import re

import pytest

from hatasks import sync, syncplan, syncsteps


def params(method="dump"):
    return {"cluster": "db", "method": method, "source": "db02", "target": "db01", "maint_port": 1234,
            "vacuum": False, "workdir": "/w", "pgdata": "/d/data", "stamp": "20261125-171500",
            "kept": "/d/data.planned", "pgpool_host": "db01"}


class Op:
    """The journal operation as run_steps sees it: steps begun and checkpoints, in order."""

    def __init__(self):
        self.checkpoints = []
        self.begun = []

    def step(self, name):
        self.begun.append(name)

    def checkpoint(self, step, **data):
        self.checkpoints.append((step, data))


@pytest.fixture
def calls(monkeypatch):
    """Every step replaced by a recorder of (step, kept it was given, st it saw) returning {step: n}."""
    seen = []

    def recorder(name):
        def run(ctx, p, st):
            seen.append((name, p["kept"], dict(st)))
            return {name: len(seen)}
        return run

    for name in list(syncsteps.STEPS):
        monkeypatch.setitem(syncsteps.STEPS, name, recorder(name))
    return seen


def test_run_steps_redoes_a_half_done_rebuild_and_checkpoints_each_step(calls, capsys):
    p = params()
    done = ["record_newest", "stop_pgpool", "source_maint", "dump_source", "stop_target", "keep_datadir",
            "initdb_target", "copy_config"]
    st = {"kept": "/d/data.kept", "dump": "/w/x.sql"}
    op = Op()
    out = sync.run_steps(None, op, p, list(done), st)
    todo, redo = syncplan.steps_to_run("dump", False, done)
    assert op.checkpoints[0] == ("redo", {"steps": redo})
    assert [c[0] for c in op.checkpoints[1:]] == todo == [name for name, _, _ in calls]
    # every step gets the kept dir the journal recorded, not the one planned
    assert {kept for _, kept, _ in calls} == {"/d/data.kept"}
    # each step sees what the earlier ones returned; each checkpoint carries its data and duration
    assert calls[1][2][todo[0]] == 1
    for i, (step, data) in enumerate(op.checkpoints[1:], 1):
        assert data[step] == i and data["seconds"] >= 0
    assert out is st and all(st[s] for s in todo)
    # progress lines number each step as in the full plan
    plan = {i["step"]: i["n"] for i in syncplan.make_plan(p)}
    progress = [re.match(r"\[(\d+)/(\d+)\] (\S+)", ln) for ln in capsys.readouterr().out.splitlines()]
    numbered = [(int(m[1]), int(m[2]), m[3]) for m in progress if m]
    assert numbered == [(plan[s], len(plan), s) for s in todo]


def test_run_steps_stops_at_a_failing_step_without_checkpointing_it(calls, monkeypatch):
    def fail(ctx, p, st):
        raise RuntimeError("import stopped")

    monkeypatch.setitem(syncsteps.STEPS, "import", fail)
    op = Op()
    with pytest.raises(RuntimeError):
        sync.run_steps(None, op, params(), [], {})
    steps = syncplan.steps_for("dump")
    assert [c[0] for c in op.checkpoints] == steps[:steps.index("import")]
    # the step that was running is journaled as begun: an interrupt report names it
    assert op.begun == steps[:steps.index("import") + 1]


def test_verify_pool_header_says_degenerated_once_the_attach_left_the_source_out(
        calls, monkeypatch, capsys):
    """The plan says "both backends up, not degenerated" for verify_pool; after the attach
    left the source detached, the line printed as the step begins says what it now checks."""
    def leave_out(ctx, p, st):
        return {"left_detached": p["source"], "left_why": "contents differ"}

    monkeypatch.setitem(syncsteps.STEPS, "attach", leave_out)
    sync.run_steps(None, Op(), params(), ["record_newest", "stop_pgpool", "source_maint",
                                          "dump_source", "stop_target", "keep_datadir",
                                          "initdb_target", "copy_config", "start_target_maint",
                                          "import", "verify", "restart_normal", "start_pgpool"],
                   {"kept": "/d/data.kept"})
    out = capsys.readouterr().out.splitlines()
    [attach] = [ln for ln in out if "] attach [" in ln]
    [header] = [ln for ln in out if "] verify_pool [" in ln]
    assert "pcp_attach_node for db01" in attach
    assert "not degenerated" not in header
    assert "db01 up, db02 left detached (degenerated, not in sync" in header


def test_resume_refuses_a_resync_whose_target_took_writes_since_it_began(calls, monkeypatch, tmp_path):
    """pgpool serves from the target alone (the source down) before the target's data was
    moved aside: the resume refuses, naming sync.rollback, and runs no step."""
    from conftest import make_ctx
    from hatasks import backends
    from hatasks.errors import StateError

    ctx = make_ctx(tmp_path)
    c = backends.pgpool_cluster(ctx, None)
    src, tgt = c.hosts[0], c.hosts[1]
    s = {"op": "r1", "finished": False, "rolled_back": False, "done": ["record_newest"],
         "outcome": None, "message": None, "data": {},
         "params": dict(params(), source=src.name, target=tgt.name)}
    monkeypatch.setattr(sync, "state", lambda ctx, cluster=None: (c, s))
    pool = {"backends": [{"node_id": src.pgpool_node_id, "host": src.name, "port": 5432, "status": "down"},
                         {"node_id": tgt.pgpool_node_id, "host": tgt.name, "port": 5432, "status": "up"}]}
    monkeypatch.setattr(sync, "read_pool", lambda ctx, c: pool)
    monkeypatch.setattr(backends, "id_disagreements", lambda c, data: [])
    with pytest.raises(StateError) as e:
        sync.resume(ctx, yes=True)
    assert "refusing to resume resync r1" in e.value.message
    assert f"clients have written to {tgt.name}" in e.value.message
    assert "inv sync.rollback" in e.value.message
    assert calls == []


def test_basebackup_moves_the_source_to_maintenance_while_the_target_stops(calls, monkeypatch):
    """source_maint runs in a thread while stop_target runs: the thread's step sees the target's
    stop end before it ends itself (it would wait in vain, one after the other). The target's
    data dir is moved aside only once both have ended."""
    import threading
    stopped = threading.Event()
    seen = {}

    def source_maint(ctx, p, st):
        seen["overlapped"] = stopped.wait(10)
        return {}

    def stop_target(ctx, p, st):
        stopped.set()
        return {}

    def keep_datadir(ctx, p, st):
        seen["kept_after"] = sorted(c[0] for c in op.checkpoints)
        return {"kept": "/d/data.kept"}

    monkeypatch.setitem(syncsteps.STEPS, "source_maint", source_maint)
    monkeypatch.setitem(syncsteps.STEPS, "stop_target", stop_target)
    monkeypatch.setitem(syncsteps.STEPS, "keep_datadir", keep_datadir)
    op = Op()
    st = sync.run_steps(None, op, params("basebackup"), [], {})
    assert seen["overlapped"] is True
    assert {"source_maint", "stop_target"} <= set(seen["kept_after"])
    steps = syncplan.steps_for("basebackup")
    assert sorted(c[0] for c in op.checkpoints) == sorted(steps)
    # each checkpointed when it ended: the thread's step after the one beside it
    order = [c[0] for c in op.checkpoints]
    assert order.index("stop_target") < order.index("source_maint") < order.index("keep_datadir")
    assert st["kept"] == "/d/data.kept"
    # the dump method keeps its order (the target is not touched before the source's dump is complete)
    assert syncplan.alongside("dump", "source_maint", ["dump_source", "stop_target"]) == []
    # a resume whose target was already stopped runs source_maint alone
    assert syncplan.alongside("basebackup", "source_maint", ["keep_datadir"]) == []


def test_a_failure_beside_the_source_move_checkpoints_what_ended_and_raises(calls, monkeypatch):
    def stop_target(ctx, p, st):
        raise RuntimeError("pg_ctl stop failed")

    monkeypatch.setitem(syncsteps.STEPS, "stop_target", stop_target)
    op = Op()
    with pytest.raises(RuntimeError, match="pg_ctl stop failed"):
        sync.run_steps(None, op, params("basebackup"), [], {})
    assert [c[0] for c in op.checkpoints] == ["record_newest", "stop_pgpool", "source_maint"]

    def source_maint(ctx, p, st):
        raise RuntimeError("source did not start on 1234")

    monkeypatch.setitem(syncsteps.STEPS, "stop_target", lambda ctx, p, st: {})
    monkeypatch.setitem(syncsteps.STEPS, "source_maint", source_maint)
    op = Op()
    with pytest.raises(RuntimeError, match="source did not start"):
        sync.run_steps(None, op, params("basebackup"), [], {})
    assert [c[0] for c in op.checkpoints] == ["record_newest", "stop_pgpool", "stop_target"]


def test_the_newest_record_of_the_plan_is_not_written_again_by_the_step(ctx, capsys):
    from hatasks import journal
    out = syncsteps.record_newest(ctx, params(), {"newest_fresh": "db02"})
    assert out == {"newest_recorded": "db02"}
    assert journal.newest(ctx, "db") is None
    assert "newest data: db02 (recorded with the plan)" in capsys.readouterr().out


def test_rollback_keeps_a_promoted_online_copy_in_place(monkeypatch, tmp_path):
    """An online resync's source lost power after the 2nd stage promoted the target's copy;
    pgpool restarted on the target's node and served the copy alone (resync-overtaken). The
    rollback used to put the old data directory back and move the copy, with the writes
    clients made since, out of the cluster. The promoted copy stays; the old one stays kept.
    A copy not promoted (a standby, or a partial one) is rolled back as before."""
    import contextlib
    from conftest import make_ctx
    from hatasks import backends, journal, pg

    ctx = make_ctx(tmp_path)
    c = backends.pgpool_cluster(ctx, None)
    s = {"op": "r1", "finished": False, "rolled_back": False, "done": ["record_newest", "install_recovery"],
         "outcome": "failed", "message": "x", "data": {},
         "params": dict(params("online"), kept_list_len=1)}
    monkeypatch.setattr(sync, "state", lambda ctx, cluster=None: (c, s))
    monkeypatch.setattr(sync, "kept_list", lambda ctx, t, d: ["/d/data.old", "/d/data.own"])
    did = []
    monkeypatch.setattr(sync, "probe", lambda ctx, h, cmd, user="postgres": did.append(("probe", cmd))
                        or type("R", (), {"exited": 0, "stdout": ""})())
    monkeypatch.setattr(sync, "run", lambda ctx, h, cmd, user="postgres", **kw: did.append(("run", cmd))
                        or type("R", (), {"exited": 0, "stdout": "moved\n"})())
    monkeypatch.setattr(pg, "server_state", lambda ctx, h: {"running": False})
    monkeypatch.setattr(sync, "ensure_running", lambda ctx, h, port: None)
    monkeypatch.setattr(sync, "read_pool", lambda ctx, c: None)
    monkeypatch.setattr(sync.remote, "sql_rows", lambda *a, **kw: [{"n": 0}])

    class Op:
        def checkpoint(self, *a, **kw):
            did.append(("checkpoint", a[0]))

        def note(self, *a, **kw):
            pass

    monkeypatch.setattr(journal, "operation", lambda *a, **kw: contextlib.nullcontext(Op()))
    monkeypatch.setattr(sync, "promoted_copy", lambda ctx, t, pgdata: True)
    assert sync.rollback(ctx, yes=True) == {"restored": None, "kept_copy": "/d/data.own"}
    assert not [d for d in did if d[0] == "run"]   # nothing moved
    # served alone by pgpool (the source down in its view): kept too
    src, tgt = (next(h for h in c.hosts if h.name == n) for n in ("db02", "db01"))
    view = {"backends": [{"node_id": src.pgpool_node_id, "host": src.name, "status": "down"},
                         {"node_id": tgt.pgpool_node_id, "host": tgt.name, "status": "up"}]}
    monkeypatch.setattr(sync, "read_pool", lambda ctx, c: view)
    assert sync.rollback(ctx, yes=True)["kept_copy"] == "/d/data.own"
    # detached while pgpool serves the source (a failed verify): rolled back as before
    view["backends"][0]["status"], view["backends"][1]["status"] = "up", "down"
    did.clear()
    assert sync.rollback(ctx, yes=True) == {"restored": "/d/data.own", "kept_copy": None}
    monkeypatch.setattr(sync, "read_pool", lambda ctx, c: None)
    did.clear()
    monkeypatch.setattr(sync, "promoted_copy", lambda ctx, t, pgdata: False)
    assert sync.rollback(ctx, yes=True) == {"restored": "/d/data.own", "kept_copy": None}
    moves = [d[1] for d in did if d[0] == "run"]
    assert len(moves) == 1 and "mv -T -- /d/data.own /d/data" in moves[0]
