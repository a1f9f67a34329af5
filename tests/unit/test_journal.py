"""journal.py: audit records, the per-cluster lock, confirmation, dry runs; the history task."""

import json
import os
import stat
import subprocess
import sys
import textwrap

import invoke
import pytest

from hatasks import core_tasks, journal
from hatasks.errors import HaError

import conftest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_ctx(state, dry=False):
    return conftest.make_ctx(state.parent, dry=dry, state_dir=str(state))


class FakeStdin:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


@pytest.fixture
def ctx(state):
    return make_ctx(state)


@pytest.fixture
def no_tty(monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeStdin(False))


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_operation_journals_start_and_done_with_private_modes(ctx, state, no_tty):
    with journal.operation(ctx, "db", "db.failover", {"node": "db01"}, yes=True) as op:
        op.note("moved", to="db02")
        op.checkpoint("stopped-pgpool")
    assert mode(state) == 0o700
    assert mode(state / "journal.jsonl") == 0o600
    assert mode(state / "lock.db") == 0o600
    recs = journal.history(ctx)
    assert [r["event"] for r in recs] == ["start", "note", "checkpoint", "done"]
    start = recs[0]
    assert start["cluster"] == "db" and start["action"] == "db.failover"
    assert start["args"] == {"node": "db01"}
    assert start["pid"] == os.getpid()
    assert start["ts"].endswith("Z") and "T" in start["ts"]
    assert start["user"] and start["host"]
    assert recs[1]["message"] == "moved" and recs[1]["data"] == {"to": "db02"}
    assert recs[2]["step"] == "stopped-pgpool"
    assert len({r["op"] for r in recs}) == 1
    # each line is one JSON object
    lines = (state / "journal.jsonl").read_text().splitlines()
    assert [json.loads(x)["event"] for x in lines] == ["start", "note", "checkpoint", "done"]


def test_user_is_sudo_user_when_set(ctx, monkeypatch, no_tty):
    monkeypatch.setenv("SUDO_USER", "alice")
    with journal.operation(ctx, "db", "pg.vacuum", yes=True):
        pass
    assert {r["user"] for r in journal.history(ctx)} == {"alice"}


def test_failure_is_journaled_and_propagates_and_unlocks(ctx, no_tty):
    with pytest.raises(HaError) as e:
        with journal.operation(ctx, "db", "db.failback", yes=True):
            raise HaError("db02 did not come online", HaError.NOT_CONVERGED)
    assert e.value.code == HaError.NOT_CONVERGED
    last = journal.history(ctx)[-1]
    assert last["event"] == "failed" and last["message"] == "db02 did not come online"
    assert journal.lock_held(ctx, "db") is None
    with journal.operation(ctx, "db", "db.failback", yes=True):
        pass


def test_unexpected_exception_is_journaled_as_failed(ctx, no_tty):
    with pytest.raises(ZeroDivisionError):
        with journal.operation(ctx, "lb", "lb.failover", yes=True):
            1 / 0
    assert journal.history(ctx)[-1]["message"].startswith("ZeroDivisionError")


def test_refused_without_terminal_and_without_yes(ctx, state, no_tty):
    ran = []
    with pytest.raises(HaError) as e:
        with journal.operation(ctx, "db", "db.failover"):
            ran.append(1)
    assert e.value.code == HaError.REFUSED
    assert "--yes" in e.value.message
    assert ran == []
    assert [r["event"] for r in journal.history(ctx)] == ["refused"]
    assert journal.lock_held(ctx, "db") is None


@pytest.mark.parametrize("answer, proceeds",
                         [("y", True), ("yes", True), ("n", False), ("", False)])
def test_confirmation_on_a_terminal(ctx, monkeypatch, capsys, answer, proceeds):
    monkeypatch.setattr(sys, "stdin", FakeStdin(True))
    prompts = []
    monkeypatch.setattr("builtins.input", lambda p: prompts.append(p) or answer)
    ran = []
    if proceeds:
        with journal.operation(ctx, "db", "db.failover", summary="move grp-pgpool to db02"):
            ran.append(1)
    else:
        with pytest.raises(HaError) as e:
            with journal.operation(ctx, "db", "db.failover"):
                ran.append(1)
        assert e.value.code == HaError.REFUSED
    assert prompts == ["Proceed? [y/N] "]
    assert "move grp-pgpool to db02" in capsys.readouterr().out or not proceeds
    assert ran == ([1] if proceeds else [])


def test_dry_runs_body_but_writes_nothing(state, capsys, no_tty):
    ctx = make_ctx(state, dry=True)
    ran = []
    with journal.operation(ctx, "db", "db.failover", {"node": "db01"}) as op:
        op.note("x")
        op.checkpoint("y")
        ran.append(op.dry)
    assert ran == [True]
    assert not state.exists()
    assert capsys.readouterr().out == "[dry] would db.failover on cluster db --node db01\n"
    assert journal.record_newest(ctx, "db", "db02", "x") is None


def test_nested_operations_reenter_the_lock(ctx, no_tty):
    with journal.operation(ctx, "db", "db.failover", yes=True) as outer:
        with journal.operation(ctx, "db", "hb.standby", {"node": "db01"}) as inner:
            assert journal.lock_held(ctx, "db")["self"] is True
        assert inner.parent == outer.id
        assert journal.lock_held(ctx, "db")["action"] == "db.failover"
    assert journal.lock_held(ctx, "db") is None
    events = [(r["action"], r["event"]) for r in journal.history(ctx)]
    assert events == [("db.failover", "start"), ("hb.standby", "start"),
                      ("hb.standby", "done"), ("db.failover", "done")]


HOLDER = textwrap.dedent("""
    import sys
    from invoke import Config, Context
    from hatasks import journal
    ctx = Context(Config(overrides={"hatasks": {"state_dir": sys.argv[1]}}))
    with journal.operation(ctx, "db", "db.failover", yes=True):
        print("held", flush=True)
        if sys.argv[2] == "wait":
            sys.stdin.readline()
        else:
            import os
            os._exit(0)   # dies holding the lock, journal left at "start"
""")


def holder(state, how):
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state), how], cwd=ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )


def test_second_process_gets_locked_error_naming_the_holder(ctx, state, no_tty):
    proc = holder(state, "wait")
    try:
        assert proc.stdout.readline() == "held\n"
        info = journal.lock_held(ctx, "db")
        assert info["pid"] == proc.pid and info["action"] == "db.failover"
        with pytest.raises(HaError) as e:
            with journal.operation(ctx, "db", "db.failback", yes=True):
                pass
        assert e.value.code == HaError.LOCKED
        msg = e.value.message
        assert msg.startswith(f"cluster db is locked by {info['user']} (pid {proc.pid} on ")
        assert f"running db.failover since {info['since']}" in msg
        with pytest.raises(HaError) as e2:
            journal.check_unlocked(ctx, "db")
        assert e2.value.code == HaError.LOCKED
        # another cluster is not affected
        with journal.operation(ctx, "lb", "lb.failover", yes=True):
            pass
    finally:
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert journal.lock_held(ctx, "db") is None
    with journal.operation(ctx, "db", "db.failback", yes=True):
        pass


def test_lock_of_a_dead_holder_is_reclaimed(ctx, state, no_tty):
    proc = holder(state, "die")
    assert proc.stdout.readline() == "held\n"
    proc.wait(timeout=30)
    # the lock file still names the dead holder, but nobody holds the flock
    body = json.loads((state / "lock.db").read_text())
    assert body["pid"] == proc.pid
    assert journal.lock_held(ctx, "db") is None
    journal.check_unlocked(ctx, "db")
    with journal.operation(ctx, "db", "db.recover", yes=True):
        assert journal.lock_held(ctx, "db")["pid"] == os.getpid()
    last = journal.last_operation(ctx, "db", "db.failover")
    assert last["finished"] is False and last["outcome"] is None


def test_newest_record(ctx, state):
    assert journal.newest(ctx, "db") is None
    journal.record_newest(ctx, "db", "db01", {"pool_nodes": "db02 down"})
    rec = journal.record_newest(ctx, "db", "db02", "current_backend_host_name=db02")
    got = journal.newest(ctx, "db")
    assert got["newest"] == "db02" and got["evidence"] == "current_backend_host_name=db02"
    assert got["ts"] == rec["ts"]
    assert mode(state / "newest.db.json") == 0o600
    assert journal.newest(ctx, "lb") is None
    # the journal alone is enough when the side file is gone
    (state / "newest.db.json").unlink()
    assert journal.newest(ctx, "db")["newest"] == "db02"


def test_last_operation_and_checkpoints(ctx, no_tty):
    with pytest.raises(HaError):
        with journal.operation(ctx, "db", "sync.resync", {"method": "dump"}, yes=True) as op:
            op.checkpoint("dumped")
            op.checkpoint("stopped-target")
            raise HaError("restore failed")
    last = journal.last_operation(ctx, "db", "sync.resync")
    assert last["args"] == {"method": "dump"}
    assert last["checkpoints"] == ["dumped", "stopped-target"]
    assert last["finished"] is True and last["outcome"] == "failed"
    assert last["message"] == "restore failed"
    assert journal.last_operation(ctx, "lb") is None


def test_operations_name_the_step_running_and_the_nested_operation(ctx, state, no_tty):
    import time
    began = time.time() - 1
    with pytest.raises(KeyboardInterrupt):
        with journal.operation(ctx, "db", "db.failover", {"from": "db01"}, yes=True) as op:
            op.step("standby")
            with journal.operation(ctx, "db", "hb.standby", {"node": "db01"}, yes=True) as inner:
                inner.step("wait")
                inner.checkpoint("wait")
            op.checkpoint("standby")
            op.step("online")
            raise KeyboardInterrupt
    ops = journal.operations(ctx, os.getpid(), began)
    assert [(o["action"], o["outcome"], o["checkpoints"], o["running"], bool(o["parent"]))
            for o in ops] == [("db.failover", "failed", ["standby"], "online", False),
                              ("hb.standby", "done", ["wait"], None, True)]
    assert ops[1]["parent"] == ops[0]["op"] and ops[0]["message"] == "interrupted"
    assert journal.operations(ctx, os.getpid() + 1, began) == []
    assert journal.operations(ctx, os.getpid(), time.time() + 5) == []
    assert journal.operations(make_ctx(state, dry=True)) == []


def test_history_limit_and_cluster_filter(ctx, no_tty):
    for i in range(3):
        with journal.operation(ctx, "db", f"a{i}", yes=True):
            pass
    with journal.operation(ctx, "lb", "b", yes=True):
        pass
    assert len(journal.history(ctx)) == 8
    assert [r["action"] for r in journal.history(ctx, limit=2)] == ["b", "b"]
    assert {r["cluster"] for r in journal.history(ctx, cluster="lb")} == {"lb"}
    assert journal.history(ctx, limit=0) == []


def test_bad_cluster_name_is_refused(ctx):
    with pytest.raises(HaError) as e:
        journal.lock_held(ctx, "../etc")
    assert e.value.code == HaError.USAGE


def test_history_task_json_and_table(ctx, capsys, no_tty):
    with journal.operation(ctx, "db", "db.failover", {"node": "db01"}, yes=True):
        pass
    journal.record_newest(ctx, "db", "db02", "degenerated; db02 up")
    core_tasks.history(ctx, format="json", limit=2)
    recs = json.loads(capsys.readouterr().out)
    assert [r["event"] for r in recs] == ["done", "newest"]
    core_tasks.history(ctx)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ts", "user", "cluster", "action", "event", "detail"]
    assert "node=db01" in lines[2] and lines[2].split()[4] == "start"
    assert "newest=db02" in lines[-1]
    with pytest.raises(invoke.Exit) as e:
        core_tasks.history(ctx, format="xml")
    assert e.value.code == HaError.USAGE


def test_newest_first_degenerated_record_stands_against_a_later_contrary_view(ctx, state):
    """After a split brain, a pgpool restarted with a stale status file names the other
    backend: the first degenerated record stands and the later one is a contradiction."""
    journal.record_newest(ctx, "db", "db01", {"in_sync": True})
    journal.record_newest(ctx, "db", "db02", {"in_sync": False, "pool_nodes": "db01 down"})
    journal.record_newest(ctx, "db", "db02", {"in_sync": False, "pool_nodes": "db01 down"})
    got = journal.newest(ctx, "db")
    assert got["newest"] == "db02" and "contradicted_by" not in got
    journal.record_newest(ctx, "db", "db01", {"degenerated": True, "pool_nodes": "db02 down"})
    got = journal.newest(ctx, "db")
    assert got["newest"] == "db02"
    assert [c["newest"] for c in got["contradicted_by"]] == ["db01"]
    # back in sync: the in-sync record stands, the contradiction is gone
    journal.record_newest(ctx, "db", "db01", {"in_sync": True})
    got = journal.newest(ctx, "db")
    assert got["newest"] == "db01" and "contradicted_by" not in got


def test_newest_is_forgotten_by_a_completed_resync(ctx, state):
    journal.record_newest(ctx, "db", "db02", {"in_sync": False})
    Journal = journal.Journal
    Journal(ctx).write("done", "db", "sync.resync", {"source": "db02"})
    assert journal.newest(ctx, "db") is None
    journal.record_newest(ctx, "db", "db01", {"degenerated": True})
    assert journal.newest(ctx, "db")["newest"] == "db01"
