"""Repairs an online resync's resume makes before its pcp_recovery_node, for the states an
interrupted attempt leaves behind (chaos seed 51 step 44): pgpool serving nobody, the target
left running as the recovery's standby copy, the recovery's promoted copy in place; and what a
dump or basebackup resync's attach step does with a source pgpool wrote past
(leave_source_detached)."""

import time

from hatasks import pg, pgpool, remote, salvage
from hatasks.errors import HaError
from hatasks.shell import q
from hatasks.syncio import ensure_running, normal_port, pool_host, probe, say
from hatasks.syncplan import SLOT


def start_if_down(ctx, h):
    """A backend pgpool shows down whose PostgreSQL is not running (killed after the resync's
    verify): started on its normal port, so the attach's comparison can read it. True when
    started."""
    if pg.server_state(ctx, h)["running"]:
        return False
    say(f"{h.name}: PostgreSQL is down; starting it (the attach compares it first)")
    pg.start(ctx, h, None)
    return True


def promoted_copy(ctx, t, pgdata):
    """True when T's data directory is a copy an online recovery finished: its 1st stage left
    standby.signal and backup_label there, the server removed backup_label when it started and
    the 2nd stage removed standby.signal after the promote. Such a copy is writable and may
    hold client writes since (pgpool served it)."""
    d = q(pgdata)
    res = probe(ctx, t, f"test -f {d}/PG_VERSION && test ! -e {d}/standby.signal && "
                        f"test ! -e {d}/backup_label && echo promoted || true", user="root")
    return "promoted" in (res.stdout or "").split()


def serve_source_alone(ctx, p, c):
    """pgpool runs but serves nobody (every backend down in its view: the source lost power
    during the online recovery and Pacemaker restarted pgpool while the target was detached;
    chaos seed 51 step 44). It takes no backend back by itself, and the recovery needs it
    serving the source. Restarted where the VIP is with the source up and the target down,
    after proving the target holds no write the source lacks when it may have taken some."""
    s, t = pg.db_host(ctx, p["source"]), pg.db_host(ctx, p["target"])
    ensure_running(ctx, s, normal_port(s))
    tst = pg.server_state(ctx, t)
    if (tst["running"] and pg.connectable(ctx, t, normal_port(t))) or promoted_copy(ctx, t, p["pgdata"]):
        ensure_running(ctx, t, normal_port(t))
        say(f"{t.name} runs writable data while pgpool serves nobody: proving it holds no write "
            f"{s.name} lacks before pgpool serves {s.name} alone")
        salvage.prove_clean(ctx, p["cluster"], t.name, s.name, p.get("force"),
                            chosen=p.get("chosen"), what=f"to serve {s.name} alone and rebuild {t.name}")
    else:
        say(f"{t.name} is not writable (stopped, or a standby copy): it took no write pgpool "
            f"did not send {s.name}")
    host = pool_host(ctx, c)
    say((f"pgpool on {host} runs but accepts no connection (every backend down in its view)"
         if host else "pgpool runs nowhere") +
        f": starting it with {s.name} up and {t.name} down, so the recovery can run")
    if host:
        pgpool.stop(ctx, host, reason="sync.resync online: pgpool serving nobody")
    order = sorted(c.hosts, key=lambda h: int(h.pgpool_node_id))
    words = ["up" if h.name == s.name else "down" for h in order]
    for h in c.hosts:
        pgpool.write_status_file(ctx, c, h.name, words)
    where = (pgpool.vip_node(ctx, c) if c.vars.get("pgpool_resource") else None) or host or s.name
    pgpool.start(ctx, where)
    pgpool.wait_backend(ctx, c, s.pgpool_node_id, "up", 60)
    return where


def stop_standby_copy(ctx, p, t):
    """An earlier attempt's 1st stage left the target running as a standby of the source (its
    own data is kept aside): it holds the recovery's replication slot active, and the next 1st
    stage cannot create it ("already exists"). Stopped (a copy, never written: hot_standby
    off), and the source's leftover slot dropped once it is free."""
    standby = probe(ctx, t, f"test -e {q(p['pgdata'] + '/standby.signal')}", user="root").exited == 0
    if not standby or not pg.server_state(ctx, t)["running"]:
        return False
    say(f"{t.name} runs as a standby copy left by an earlier attempt: stopping it (its own data "
        f"is kept aside)")
    pg.stop(ctx, t, "fast")
    s = pg.db_host(ctx, p["source"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = remote.sql_rows(ctx, s, "SELECT count(*) AS n FROM pg_replication_slots WHERE "
                               "slot_name = %s AND NOT active", (SLOT,), port=normal_port(s))
        if rows and int(rows[0]["n"]):
            remote.sql_rows(ctx, s, "SELECT pg_drop_replication_slot(%s)", (SLOT,), port=normal_port(s))
            say(f"{s.name}: dropped the earlier attempt's replication slot {SLOT}")
            break
        left = remote.sql_rows(ctx, s, "SELECT count(*) AS n FROM pg_replication_slots WHERE "
                               "slot_name = %s", (SLOT,), port=normal_port(s))
        if not (left and int(left[0]["n"])):
            break
        time.sleep(0.5)
    return True


def leave_source_detached(p, why):
    """The attach refused the resync's source (its PostgreSQL was killed after the verify;
    pgpool started with it down and clients wrote to the target alone): the target is the
    verified copy of the source at copy time plus every acknowledged write since, so it holds
    the newest data. The resync ends with the source detached (checkpointed, and in the
    resync summary); the next diagnosis sees pgpool degenerated with the target newest and
    rebuilds the source from it, after proving the source holds no write the target lacks."""
    say(f"{p['source']} is not attached: {why}")
    say(f"{p['target']} is the verified copy and pgpool has sent every write since to it "
        f"alone: it holds the newest data. The resync ends with {p['source']} left detached "
        f"(its data untouched); the next db.recover rebuilds it from {p['target']} after "
        f"proving it holds no write {p['target']} lacks")
    return {"left_detached": p["source"], "left_why": why}


def moved_by_recovery(ctx, method, target, pgdata, kept_list_len):
    """An online resync's TARGET: where the recovery scripts listed its own data since the
    plan (the 1st stage moved it aside), False when they listed nothing, None when unread."""
    if method != "online" or kept_list_len is None or not pgdata:
        return None
    try:
        res = probe(ctx, pg.db_host(ctx, target), f"cat {q(pgdata + '.hatasks-kept')} 2>/dev/null || true")
    except HaError:  # unreachable: not read
        return None
    if res.exited != 0:
        return None
    since = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()][int(kept_list_len):]
    return since[0] if since else False
