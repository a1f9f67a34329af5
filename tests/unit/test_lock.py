"""The operation lock and the newest-data record kept in the cluster (hatasks.lock), with the
network faked: the commands sent to the CIB and to the hosts' files, and the decisions taken on
their answers (free, held, expired, CIB down -> host files, nothing reachable)."""

import json
import pathlib
import shlex
import tempfile
from xml.sax.saxutils import quoteattr

import pytest

from conftest import Seq, make_ctx
from hatasks import journal, lock
from hatasks.errors import HaError


@pytest.fixture
def lctx(tmp_path):
    return make_ctx(tmp_path, cluster_state=True, lock_lease=60)


def cib_set(user="bob", token="feed", renewed=990, lease=60, action="sync.resync"):
    pairs = {"token": token, "cluster": "db", "user": user, "host": "admin2", "pid": "4242",
             "action": action, "since": "2026-11-30T10:00:00Z", "lease": lease,
             "renewed": renewed}
    body = "".join(f"<nvpair id=\"hatasks-lock-{k}\" name=\"{k}\" value={quoteattr(str(v))}/>"
                   for k, v in pairs.items())
    return f"<cluster_property_set id=\"hatasks-lock\">{body}</cluster_property_set>"


def is_create(host, cmd):
    return "cibadmin --create" in cmd and "cibadmin --delete" not in cmd


def is_takeover(host, cmd):
    return "cibadmin --create" in cmd and "cibadmin --delete" in cmd


def host_op(op):
    return lambda host, cmd: "flock -w 10 9" in cmd and f"op={op}" in cmd


def free_cluster(fake):
    fake.on(is_create, (0, "rc=0\nnow=1000\n"))
    fake.on(host_op("take"), (0, "now=1000\nSTATE=taken\n"))
    fake.on(host_op("release"), (0, "now=1000\nSTATE=free\nrc=0\n"))
    fake.on(lambda h, c: c.startswith("cibadmin --delete"), (0, "rc=0\n"))
    return fake


def test_free_lock_is_a_cib_create_plus_a_file_on_each_host_and_is_given_back(lctx, fake):
    free_cluster(fake)
    held = lock.take(lctx, "db", "db.failover", "alice")
    try:
        assert held.stores == ["CIB", "file on db01", "file on db02"]
        create = fake.calls[0]
        assert create.host == "db01"
        assert "cibadmin --create -o crm_config -X '<cluster_property_set id=\"hatasks-lock\">" \
            in create.command
        assert "name=\"user\" value=\"alice\"" in create.command
        assert "name=\"action\" value=\"db.failover\"" in create.command
        # the lease is renewed on the node's clock, not the admin host's
        assert "now=$(date +%s)" in create.command and "\"$now\"" in create.command
        # the files are taken on both hosts at once: the order of the calls is not fixed
        assert sorted(c.host for c in fake.calls[1:]) == ["db01", "db02"]
        assert all("op=take" in c.command for c in fake.calls[1:])
    finally:
        n = len(fake.calls)
        held.release()
    back = sorted(fake.calls[n:], key=lambda c: c.host)
    # one command per host, all at once; the CIB's set goes with db01's file, and only OUR set:
    # the xpath names our token
    assert [(c.host, c.command.count("op=release")) for c in back] == [("db01", 1), ("db02", 1)]
    assert f'[nvpair[@name="token"][@value="{held.owner["token"]}"]]' in back[0].command
    assert "cibadmin" not in back[1].command


def test_held_lock_is_refused_naming_the_holder(lctx, fake):
    fake.on(is_create, (0, f"rc=108\nnow=1000\n{cib_set(renewed=990)}\n"))
    with pytest.raises(HaError) as err:
        lock.take(lctx, "db", "db.failover", "alice")
    assert err.value.code == HaError.LOCKED
    assert "locked by bob (pid 4242 on admin2) running sync.resync" in err.value.message
    assert "lease ends in 50s" in err.value.message
    # nothing else was touched: no file written, nothing deleted
    assert len(fake.calls) == 1


def test_expired_lease_is_taken_over_with_a_conditional_delete_and_named(lctx, fake, capsys):
    free_cluster(fake)
    fake.on(is_create, (0, f"rc=108\nnow=1000\n{cib_set(renewed=900, lease=60)}\n"))
    fake.on(is_takeover, (0, "rc=0\nnow=1000\n"))
    held = lock.take(lctx, "db", "db.failover", "alice")
    try:
        takeover = [c.command for c in fake.calls if is_takeover(None, c.command)]
        assert len(takeover) == 1
        # the delete names the expired holder's token: a second taker cannot delete ours
        assert ("cibadmin --delete --xpath '//crm_config/cluster_property_set[@id=\"hatasks-lock\"]"
                '[nvpair[@name="token"][@value="feed"]]\'') in takeover[0]
        assert held.took_over[0]["user"] == "bob"
        err = capsys.readouterr().err
        assert "taking over the lock of cluster db from bob (pid 4242 on admin2) running " \
               "sync.resync" in err
        assert "ran out 40s ago (CIB)" in err
    finally:
        held.release()


def test_losing_the_takeover_race_is_a_refusal(lctx, fake):
    fake.on(is_create, (0, f"rc=108\nnow=1000\n{cib_set(renewed=900)}\n"))
    fake.on(is_takeover, (0, f"rc=108\nnow=1001\n{cib_set(user='carol', token='beef', renewed=1001)}\n"))
    with pytest.raises(HaError) as err:
        lock.take(lctx, "db", "db.failover", "alice")
    assert err.value.code == HaError.LOCKED and "locked by carol" in err.value.message


def test_cib_down_falls_back_to_files_on_the_db_hosts(lctx, fake):
    free_cluster(fake)
    # "Could not connect to the CIB" on both nodes: both stacks are stopped
    fake.on(is_create, (0, "rc=102\nnow=1000\n"))
    held = lock.take(lctx, "db", "hb.start", "alice")
    try:
        assert held.stores == ["file on db01", "file on db02"]
        assert [c.host for c in fake.calls if is_create(c.host, c.command)] == ["db01", "db02"]
    finally:
        n = len(fake.calls)
        held.release()
    # no CIB to give back: only the files
    assert all("op=release" in c.command for c in fake.calls[n:])


def test_a_file_held_elsewhere_refuses_and_gives_back_what_was_taken(lctx, fake):
    free_cluster(fake)
    fake.on(lambda h, c: h == "db02" and "op=take" in c,
            (0, "now=1000\nSTATE=held\nleft=33\ntoken=beef\nuser=carol\nhost=admin3\npid=7\n"
                "action=hb.stop\nsince=x\n"))
    with pytest.raises(HaError) as err:
        lock.take(lctx, "db", "db.failover", "alice")
    assert err.value.code == HaError.LOCKED
    assert "locked by carol (pid 7 on admin3) running hb.stop" in err.value.message
    assert "[lock in file on db02]" in err.value.message
    # what was taken is given back: the CIB entry (a delete conditioned on our token) and the
    # files (the stores are released in parallel: their order is not fixed)
    cib_back = [c for c in fake.calls if "cibadmin --delete" in c.command]
    assert cib_back and all("@value=" in c.command for c in cib_back)
    assert any("op=release" in c.command for c in fake.calls)


def test_nothing_reachable_is_refused_not_locked_on_the_admin_host_alone(lctx, fake):
    fake.down |= {"db01", "db02"}
    with pytest.raises(HaError) as err:
        lock.take(lctx, "db", "db.failover", "alice")
    assert err.value.code == HaError.UNREACHABLE
    assert "not taking the lock on this admin host alone" in err.value.message


def test_operation_takes_the_cluster_lock_once_for_nested_operations(lctx, fake):
    free_cluster(fake)
    with journal.operation(lctx, "db", "db.recover", yes=True):
        with journal.operation(lctx, "db", "pg.start", yes=True):
            pass
        creates = [c for c in fake.calls if is_create(c.host, c.command)]
        assert len(creates) == 1
    assert sum("op=release" in c.command for c in fake.calls) == 2


def test_operation_refused_by_the_cluster_leaves_the_local_lock_free(lctx, fake):
    fake.on(is_create, (0, f"rc=108\nnow=1000\n{cib_set()}\n"))
    with pytest.raises(HaError) as err:
        with journal.operation(lctx, "db", "db.failover", yes=True):
            pytest.fail("the body ran without the lock")
    assert err.value.code == HaError.LOCKED
    fake.on(is_create, (0, "rc=0\nnow=1000\n"))
    free_cluster(fake)
    with journal.operation(lctx, "db", "db.failover", yes=True):
        pass


def test_renewal_modifies_only_our_set_and_reports_a_lost_lock(lctx, fake, capsys):
    free_cluster(fake)
    held = lock.take(lctx, "db", "db.failover", "alice")
    held._stop.set()      # renew by hand, not from the thread
    fake.on(lambda h, c: "cibadmin --modify" in c, (0, "rc=105\n"))
    # gone, and someone else holds it now
    fake.on(is_create, (0, f"rc=108\nnow=1000\n{cib_set(user='carol', token='beef')}\n"))
    fake.on(host_op("renew"), (0, "now=1000\nSTATE=taken\n"))
    held.renew()
    modify = [c.command for c in fake.calls if "cibadmin --modify" in c.command][0]
    assert f'[@value="{held.owner["token"]}"]' in modify
    assert held.lost == ["CIB"]
    err = capsys.readouterr().err
    assert "was taken from this operation to cluster db is locked by carol" in err
    held.release()


def test_show_reads_every_store(lctx, fake):
    fake.on(lambda h, c: "cibadmin --query" in c and "hatasks-lock" in c,
            (0, f"rc=0\nnow=1000\n{cib_set(renewed=990)}\n"))
    fake.on(host_op("show"), (0, "now=1000\nSTATE=free\n"))
    rows = lock.show(lctx, "db")
    assert rows[0]["store"] == "CIB" and rows[0]["state"] == "held"
    assert rows[0]["user"] == "bob" and rows[0]["left"] == 50
    assert [(r["store"], r["state"]) for r in rows[1:]] == [("file on db01", "free"),
                                                           ("file on db02", "free")]


def test_off_by_default_without_the_configured_defaults(ctx, fake):
    # contexts built without config.DEFAULTS (unit tests, scripts) keep the lock local
    assert lock.take(ctx, "db", "db.failover", "alice") is None
    assert lock.read_newest(ctx, "db") is None
    assert fake.calls == []


# ---- the newest-data record -------------------------------------------------------------


def rec(ts, newest, in_sync, host="admin1"):
    return {"ts": ts, "user": "alice", "host": host, "pid": 1, "cluster": "db",
            "action": "newest", "event": "newest", "newest": newest,
            "evidence": {"in_sync": in_sync, "reason": "test"}}


def cib_newest_output(record, path_text=""):
    value = quoteattr(json.dumps(record))
    return (f"--file\n{path_text}\n--cib\n"
            f"<nvpair id=\"nodes-1-hatasks-newest\" name=\"hatasks-newest\" value={value}/>\n"
            f"<nvpair id=\"nodes-2-hatasks-newest\" name=\"hatasks-newest\" value={value}/>\n"
            "--rc=0\n")


def test_newest_is_written_as_node_attributes_and_files(lctx, fake):
    fake.on(lambda h, c: "crm_attribute" in c or "newest.db.json" in c,
            lambda h, c: (0, "file=0\ncib=0\n" if "crm_attribute" in c else "file=0\n"))
    fake.on(lambda h, c: "--cib" in c, (0, "--file\n\n--cib\n--rc=105\n"))
    journal.record_newest(lctx, "db", "db02", {"in_sync": False, "reason": "pgpool.stop"})
    writes = sorted((c for c in fake.calls if "newest.db.json.tmp" in c.command),
                    key=lambda c: c.host)    # both hosts at once: the order is not fixed
    assert [c.host for c in writes] == ["db01", "db02"]
    first = writes[0].command
    assert "crm_attribute --lifetime forever --node db01 --name hatasks-newest --update" in first
    assert "--node db02 --name hatasks-data-status --update LATEST" in first
    assert "--node db01 --name hatasks-data-status --update STALE" in first
    # the CIB is written once; the second host only gets its file
    assert "crm_attribute" not in writes[1].command


def test_newest_goes_to_the_next_hosts_cib_when_the_first_cannot_take_it(lctx, fake):
    # db01 writes its file but its CIB refuses (its stack is stopping): db02 writes the CIB
    fake.on(lambda h, c: "newest.db.json.tmp" in c,
            lambda h, c: (0, "file=0\ncib=1\n" if h == "db01" and "crm_attribute" in c
                          else "file=0\ncib=0\n" if "crm_attribute" in c else "file=0\n"))
    assert lock.write_newest(lctx, "db", {"newest": "db01", "evidence": {"in_sync": True}}) \
        == ["CIB", "file on db01", "file on db02"]
    writes = [(c.host, "crm_attribute" in c.command) for c in fake.calls]
    assert sorted(writes[:2]) == [("db01", True), ("db02", False)]
    assert writes[2:] == [("db02", True)]
    # the CIB taken by the first host: nothing more
    fake.calls.clear()
    fake.on(lambda h, c: "newest.db.json.tmp" in c,
            lambda h, c: (0, "file=0\ncib=0\n" if "crm_attribute" in c else "file=0\n"))
    assert lock.write_newest(lctx, "db", {"newest": "db01"}) == [
        "CIB", "file on db01", "file on db02"]
    assert len(fake.calls) == 2


def test_newest_prefers_the_clusters_record_when_it_is_newer(lctx, fake):
    journal.Journal(lctx).write("newest", "db", "newest", {}, newest="db01",
                                evidence={"in_sync": True})
    other = rec("2099-01-01T00:00:00Z", "db02", False, host="admin2")
    fake.on(lambda h, c: "--cib" in c, (0, cib_newest_output(other)))
    got = journal.newest(lctx, "db")
    assert got["newest"] == "db02" and got["host"] == "admin2"
    assert got["kept_in"] == "CIB"


def test_a_later_local_degenerated_view_does_not_replace_the_clusters_standing_record(lctx, fake):
    # admin2 recorded db02 degenerated first; here a stale pgpool later names db01
    first = rec("2000-01-01T00:00:00Z", "db02", False, host="admin2")
    fake.on(lambda h, c: "--cib" in c, (0, cib_newest_output(first)))
    journal.Journal(lctx).write("newest", "db", "newest", {}, newest="db01",
                                evidence={"in_sync": False})
    got = journal.newest(lctx, "db")
    assert got["newest"] == "db02"
    assert [c["newest"] for c in got["contradicted_by"]] == ["db01"]


def test_cluster_unreachable_read_falls_back_to_the_local_journal(lctx, fake):
    fake.down |= {"db01", "db02"}
    journal.Journal(lctx).write("newest", "db", "newest", {}, newest="db01",
                                evidence={"in_sync": True})
    assert journal.newest(lctx, "db")["newest"] == "db01"


def test_read_takes_the_host_file_when_the_cib_is_down(lctx, fake):
    kept = rec("2099-01-01T00:00:00Z", "db02", False, host="admin2")
    fake.on(lambda h, c: "--cib" in c,
            Seq([(0, f"--file\n{json.dumps(kept)}\n--cib\n\n--rc=102\n"),
                 (0, "--file\n\n--cib\n\n--rc=102\n")]))
    got = lock.read_newest(lctx, "db")
    assert got["newest"] == "db02" and got["kept_in"] == "file"


# ---- lock.show / lock.break ----------------------------------------------------------------


def test_break_needs_yes_without_a_terminal_and_is_journaled(lctx, fake, monkeypatch):
    from hatasks import lock_tasks

    fake.on(lambda h, c: "cibadmin --query" in c and "hatasks-lock" in c,
            Seq([(0, f"rc=0\nnow=1000\n{cib_set(renewed=990)}\n")] * 2
                + [(0, "rc=105\nnow=1001\n")]))
    fake.on(host_op("show"), (0, "now=1000\nSTATE=free\n"))
    fake.on(host_op("break"), (0, "now=1000\nSTATE=free\n"))
    fake.on(lambda h, c: c.startswith("cibadmin --delete"), (0, "rc=0\n"))
    monkeypatch.setattr("sys.stdin", None)
    with pytest.raises(HaError) as err:
        lock_tasks.break_(lctx, "db")
    assert err.value.code == HaError.REFUSED
    assert not [c for c in fake.calls if "cibadmin --delete" in c.command]
    lock_tasks.break_(lctx, "db", yes=True)
    delete = [c.command for c in fake.calls if "cibadmin --delete" in c.command]
    # breaking removes the set whoever holds it: no token in the xpath
    assert delete == ["cibadmin --delete --xpath "
                      "'//crm_config/cluster_property_set[@id=\"hatasks-lock\"]'"
                      " >/dev/null 2>&1; echo rc=$?"]
    events = [(r["event"], r["action"]) for r in journal.history(lctx)]
    assert events == [("refused", "lock.break"), ("note", "lock.break")]
    note = journal.history(lctx)[-1]
    assert "bob (pid 4242 on admin2) running sync.resync" in note["message"]


# ---- the lab as a fleet ----------------------------------------------------------------------


def test_fleet_inventory_names_clusters_and_hosts_per_instance():
    from hatasks import inventory
    from lab.configs import fleet_texts

    hosts, ssh = fleet_texts([6, 7])
    folder = pathlib.Path(tempfile.mkdtemp())  # the fleet's folder, with the ssh_config it names
    (folder / "ssh_config").write_text(ssh)
    inv = inventory.parse(hosts, str(folder / "hosts.ini"), strict=True)
    assert sorted(inv.clusters) == ["db6", "db7", "lb6", "lb7"]
    assert inv.cluster("db7").host_names == ["db01-7", "db02-7"]
    h = inv.host("db02-7")
    assert h.address == "10.231.7.12" and h.vars["crm_node"] == "db02"
    assert h.vars["pgpass"].endswith("lab/.state/7/pgpass")
    assert h.vars["power_check"].endswith("lab/bin/power-check --lab 7 db02")
    assert "Host db02-7\n    HostName 10.231.7.12\n    HostKeyAlias db02\n" in ssh
    assert lock.crm_nodes(make_ctx_for(hosts), "db6") == {"db01-6": "db01", "db02-6": "db02"}


def make_ctx_for(text):
    folder = pathlib.Path(tempfile.mkdtemp())
    (folder / "hosts.ini").write_text(text)
    return make_ctx(folder, inventory=folder / "hosts.ini")


def test_renewal_takes_back_a_set_that_vanished(lctx, fake):
    free_cluster(fake)
    held = lock.take(lctx, "db", "db.failover", "alice")
    held._stop.set()
    fake.on(lambda h, c: "cibadmin --modify" in c, (0, "rc=105\n"))
    fake.on(host_op("renew"), (0, "now=1000\nSTATE=taken\n"))
    n = len(fake.calls)
    held.renew()
    assert [is_create(c.host, c.command) for c in fake.calls[n:]][:2] == [False, True]
    assert held.lost == [] and held.cib_node == "db01"
    held.release()


def test_db_rules_read_the_clusters_record_too(lctx, fake):
    from hatasks import rules

    kept = rec("2099-01-01T00:00:00Z", "db02", False, host="admin2")
    fake.on(lambda h, c: "--cib" in c, (0, cib_newest_output(kept)))
    facts = rules.journal_facts(journal.records_with_cluster(lctx, "db"), "db")
    assert facts["first_degenerated"]["newest"] == "db02"


def test_release_deletes_the_set_through_another_node_when_its_stack_was_stopped(lctx, fake):
    free_cluster(fake)
    held = lock.take(lctx, "db", "hb.stop", "alice")
    held._stop.set()
    # the operation stopped db01's stack: its cibadmin cannot connect any more
    fake.on(lambda h, c: h == "db01" and "op=release" in c, (0, "now=1\nSTATE=free\nrc=102\n"))
    fake.on(lambda h, c: c.startswith("cibadmin --delete"), (0, "rc=0\n"))
    n = len(fake.calls)
    held.release()
    retry = [c for c in fake.calls[n:] if c.command.startswith("cibadmin --delete")]
    assert [c.host for c in retry] == ["db02"]
    assert f'[@value="{held.owner["token"]}"]' in retry[0].command


def test_a_resync_done_writes_the_in_sync_state_into_the_cluster_too(lctx, fake):
    # the cluster keeps a degenerated record (db01 newest, with a contradiction) written by
    # another admin host; a resync done here must leave an in-sync record there, or the next
    # admin host keeps reading the old one and refuses its own resync as a split brain
    kept = dict(rec("2000-01-01T00:00:00Z", "db01", False, host="admin2"),
                contradicted_by=[{"newest": "db02", "ts": "2000-01-01T00:01:00Z"}])
    written = []
    fake.on(lambda h, c: "--cib" in c, lambda h, c: (0, cib_newest_output(
        written[-1] if written else kept)))

    def write(host, cmd):
        words = shlex.split(cmd)
        for i, w in enumerate(words[:-2]):
            if w == "hatasks-newest" and words[i + 1] == "--update":
                written.append(json.loads(words[i + 2]))
        return (0, "file=0\ncib=0\n" if "crm_attribute" in cmd else "file=0\n")

    fake.on(lambda h, c: "newest.db.json.tmp" in c, write)
    free_cluster(fake)
    with journal.operation(lctx, "db", "sync.resync", {"source": "db02"}, yes=True):
        pass
    # the source the operator forced is the one the record names (both are equal now)
    assert written and written[-1]["evidence"]["in_sync"] is True
    assert written[-1]["newest"] == "db02" and not written[-1].get("contradicted_by")
    assert journal.newest(lctx, "db")["evidence"]["in_sync"] is True


def dead_pid():
    """A pid that was ours and is gone: a child that exited and was reaped."""
    import subprocess

    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_dead_here_only_for_a_gone_process_of_this_host_boot_and_pid_namespace():
    import os
    import socket

    me = {"host": socket.gethostname(), "proc": lock.proc_id()}
    assert me["proc"]
    assert lock.dead_here(dict(me, pid=str(dead_pid())))
    assert not lock.dead_here(dict(me, pid=str(os.getppid())))          # alive
    assert not lock.dead_here(dict(me, pid=str(os.getpid())))           # ourselves
    assert not lock.dead_here(dict(me, pid=str(dead_pid()), host="admin2"))
    assert not lock.dead_here(dict(me, pid=str(dead_pid()), proc="other-boot/pid:[1]"))
    assert not lock.dead_here(dict(me, pid="x"))
    assert not lock.dead_here({"host": me["host"], "pid": str(dead_pid())})  # an older holder: no proc


def test_a_live_lease_of_a_killed_holder_on_this_host_is_taken_over_at_once(lctx, fake, capsys):
    """SIGKILL leaves the lease in the CIB and the files (nothing renews it, nothing gives it
    back): a holder on this admin host whose process is gone is taken over without waiting."""
    import socket

    gone = {"host": socket.gethostname(), "proc": lock.proc_id(), "pid": str(dead_pid())}
    live = cib_set(renewed=990).replace('value="admin2"', f'value="{gone["host"]}"').replace(
        'value="4242"', f'value="{gone["pid"]}"').replace(
        '<nvpair id="hatasks-lock-action"',
        f'<nvpair id="hatasks-lock-proc" name="proc" value={quoteattr(gone["proc"])}/>'
        '<nvpair id="hatasks-lock-action"')
    free_cluster(fake)
    fake.on(is_create, (0, f"rc=108\nnow=1000\n{live}\n"))
    fake.on(is_takeover, (0, "rc=0\nnow=1000\n"))
    fake.on(lambda h, c: "op=take" in c and "stale=feed" in c,
            (0, "now=1000\nSTATE=takeover\nleft=50\ntoken=feed\nuser=bob\n"))
    held = lock.take(lctx, "db", "db.failover", "alice")
    try:
        assert [c for c in fake.calls if is_takeover(None, c.command)]
        # the files are taken over for that token only
        takes = [c.command for c in fake.calls if "op=take" in c.command]
        assert len(takes) == 2 and all("stale=feed" in c for c in takes)
        assert held.took_over[0]["dead"] is True
        err = capsys.readouterr().err
        assert f"(pid {gone['pid']} on {gone['host']})" in err and "its process is gone" in err
    finally:
        held.release()
    # the same holder alive (its pid is ours: a live process): refused
    import os

    alive = live.replace(f'value="{gone["pid"]}"', f'value="{os.getppid()}"')
    fake.on(is_create, (0, f"rc=108\nnow=1000\n{alive}\n"))
    with pytest.raises(HaError) as err:
        lock.take(lctx, "db", "db.failover", "alice")
    assert err.value.code == HaError.LOCKED


def test_host_script_takes_over_only_the_stale_token(tmp_path):
    """The real host script (bash, flock) on a file held with a live lease: refused, except
    for the token a take names as stale."""
    import subprocess

    ctx = make_ctx(tmp_path, cluster_state=True, lock_lease=60, lock_dir=str(tmp_path / "locks"))
    old = {"token": "feed", "user": "bob", "pid": "1", "lease": 60}
    new = {"token": "beef", "user": "alice", "pid": "2", "lease": 60}

    def run(op, owner, stale=""):
        cmd = lock.host_command(ctx, "db", op, owner, stale)
        return lock.parse_host_output(subprocess.run(["bash", "-c", cmd], capture_output=True,
                                                     text=True, check=True).stdout)

    assert run("take", old)[0] == "taken"
    assert run("take", new)[0] == "held"
    assert run("take", new, stale="0bad")[0] == "held"
    state, _, info = run("take", new, stale="feed")
    assert state == "takeover" and info["token"] == "feed"
    assert run("show", {})[2]["token"] == "beef"
