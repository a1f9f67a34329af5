"""db.carry_pool_view: the pgpool about to start on the destination of a move gets the
current backend view, not the stale pgpool_status of its last run (on the shared FakeRemote)."""

from hatasks import db


def test_carry_pool_view_writes_the_current_view_into_the_destination(ctx, fake, capsys):
    c = db.checks.cluster(ctx, None, "db")
    fake.on("pgpool_status", (0, "written /var/log/postgresql/pgpool_status\n"))
    data = {"backends": [{"node_id": 1, "host": "db02", "status": "up"},
                         {"node_id": 0, "host": "db01", "status": "down"}]}
    db.carry_pool_view(ctx, c, "db02", data)
    (call,) = [x for x in fake.calls if "pgpool_status" in x.command]
    assert call.host == "db02" and call.user == "postgres"
    assert r"printf '%s\n' down up >" in call.command      # node-id order: 0 down, 1 up
    assert "ss -Hltn" in call.command                    # never under a running pgpool
    assert "db02: pgpool_status set to the current view (down, up)" in capsys.readouterr().out
    db.carry_pool_view(ctx, c, "db02", None)             # pgpool did not answer: nothing
    assert len([x for x in fake.calls if "pgpool_status" in x.command]) == 1


# ------------------------------------------------------------------ db.failover on the FakeRemote

import threading  # noqa: E402

import pytest  # noqa: E402

from hatasks import crm  # noqa: E402
from tests.unit.conftest import FIXTURES, make_ctx, psql_rows  # noqa: E402

LAB = FIXTURES / "lab-samples"
INITIAL = (LAB / "crm_mon-1_xml_db_initial.xml").read_text()
STANDBY = (LAB / "crm_mon-1_xml_db01_standby.xml").read_text()
BACK = STANDBY.replace('name="db01" id="1" online="true" standby="true"',
                       'name="db01" id="1" online="true" standby="false"')
BOTH_UP = psql_rows((LAB / "show_pool_nodes.txt").read_text())


class Moving:
    """The DB cluster as the lab answers it: crm_mon follows crm_standby on/off; the lock, the
    newest-data record and pgpool_status answered as on a free, healthy cluster. ``order``: the
    commands in the order they were SENT (the calls list records them as they end)."""

    def __init__(self, fake):
        self.state, self.order, self.mutex = INITIAL, [], threading.Lock()
        fake.sql("SHOW pool_nodes", BOTH_UP)
        fake.on(lambda h, c: True, self.answer)

    def answer(self, host, cmd):
        with self.mutex:
            self.order.append((host, cmd))
        if cmd == crm.CRM_MON:
            return 0, self.state
        if cmd == "crm_standby -N db01 -v on":
            self.state = STANDBY
            return 0, ""
        if cmd == "crm_standby -N db01 -v off":
            self.state = BACK
            return 0, ""
        if cmd.startswith("crmadmin -S "):
            return 0, f"Controller on {cmd.split()[-1]} in state S_IDLE: ok\n"
        if "cibadmin --create" in cmd:
            return 0, "rc=0\nnow=1000\n"
        if "op=take" in cmd:
            return 0, "now=1000\nSTATE=taken\n"
        if "op=release" in cmd:
            return 0, "now=1000\nSTATE=free\nrc=0\n"
        if "--cib" in cmd:                            # the newest-data record kept in the cluster
            return 0, "--file\n\n--cib\n--rc=105\n"
        if "newest.db.json.tmp" in cmd:
            return 0, "file=0\ncib=0\n" if "crm_attribute" in cmd else "file=0\n"
        if "pgpool_status" in cmd:
            return 0, "written\n"
        raise AssertionError(f"unexpected command on {host}: {cmd}")

    def index(self, pred, start=0):
        return next(i for i, (h, c) in enumerate(self.order) if i >= start and pred(h, c))


@pytest.fixture
def moving(fake):
    return Moving(fake)


def test_failover_holds_the_lock_across_every_mutating_command(tmp_path, fake, moving):
    lctx = make_ctx(tmp_path, cluster_state=True, lock_lease=60)
    after = db.failover(lctx, yes=True)
    assert db.crmmon.group_node(after, "grp-pgpool") == "db02"
    o = moving.order
    take = moving.index(lambda h, c: "cibadmin --create" in c)
    files = [i for i, (h, c) in enumerate(o) if "op=take" in c]
    held = max(files)
    release = [i for i, (h, c) in enumerate(o) if "op=release" in c]
    on = moving.index(lambda h, c: c == "crm_standby -N db01 -v on")
    off = moving.index(lambda h, c: c == "crm_standby -N db01 -v off")
    carry = moving.index(lambda h, c: "pgpool_status" in c)
    # the lock taken once (CIB, then both files) and given back once, after the last change
    assert len([c for h, c in o if "cibadmin --create" in c]) == 1 and len(files) == 2
    assert take < held < carry < on < off < min(release) and len(release) == 2
    # the state the standby starts from is read under the lock, after the lock is held, and
    # not read again by hb.standby: exactly one crm_mon between the lock and crm_standby on
    reads = [i for i, (h, c) in enumerate(o) if c == crm.CRM_MON and held < i < on]
    assert len(reads) == 1
    # the newest-data record is written before pgpool moves, and from the one SHOW pool_nodes
    # read before the move (the record does not ask pgpool again)
    assert max(i for i, (h, c) in enumerate(o) if "newest.db.json.tmp" in c) < on
    show = [q for q in fake.queries if "SHOW pool_nodes" in str(q.query)]
    assert len(show) == 2        # one before the move, one after it (pgpool answers on db02)
    # the move is verified from the cluster itself after the node is back online: crm_mon and
    # the DC asked after crm_standby off, before the lock goes
    assert any(c == crm.CRM_MON for h, c in o[off:min(release)])
    assert any(c.startswith("crmadmin -S ") for h, c in o[off:min(release)])


def test_failover_refused_on_state_gives_the_early_lock_back(tmp_path, fake, moving):
    lctx = make_ctx(tmp_path, cluster_state=True, lock_lease=60)
    moving.state = STANDBY      # the group runs on db02 and db01 is in standby: no other node
    with pytest.raises(db.HaError) as exc:
        db.failover(lctx, from_="db02", yes=True)
    assert "no other node is online" in exc.value.message
    # taken while the state was read, given back on the refusal; nothing was changed
    assert len([c for h, c in moving.order if "op=take" in c]) == 2
    assert len([c for h, c in moving.order if "op=release" in c]) == 2
    assert not [c for h, c in moving.order if c.startswith("crm_standby")]
    # nothing of it stays held in this process: the next task takes the lock afresh
    moving.state = INITIAL
    db.failover(lctx, yes=True)
    assert len([c for h, c in moving.order if "op=take" in c]) == 4


def test_failover_under_dry_takes_no_lock(tmp_path, fake, moving):
    dctx = make_ctx(tmp_path, dry=True, cluster_state=True, lock_lease=60)
    db.failover(dctx, yes=True)
    assert not [c for h, c in moving.order if "cibadmin --create" in c or "op=take" in c]


def test_failover_while_another_operator_holds_the_lock_is_refused_locked(tmp_path, fake, moving):
    from xml.sax.saxutils import quoteattr

    from hatasks import lock as cluster_lock

    lctx = make_ctx(tmp_path, cluster_state=True, lock_lease=60)
    held = {"token": "feed", "cluster": "db", "user": "bob", "host": "admin2", "pid": "4242",
            "action": "sync.resync", "since": "2026-11-30T10:00:00Z", "lease": 60,
            "renewed": 990}
    body = "".join(f"<nvpair id=\"hatasks-lock-{k}\" name=\"{k}\" value={quoteattr(str(v))}/>"
                   for k, v in held.items())
    fake.on(lambda h, c: "cibadmin --create" in c,
            (0, f"rc={cluster_lock.CIB_EXISTS}\nnow=1000\n<cluster_property_set id=\"hatasks-lock\">"
                f"{body}</cluster_property_set>\n"))
    with pytest.raises(db.HaError) as exc:
        db.failover(lctx, yes=True)
    # the early take failed quietly; the operation's own take names the holder
    assert exc.value.code == db.HaError.LOCKED and "bob" in exc.value.message
    assert not [c for h, c in moving.order if c.startswith("crm_standby")]
    assert not [c for h, c in moving.order if "pgpool_status" in c or "op=release" in c]
