"""The host I/O every resync module shares: its progress lines, its commands on a backend,
the backend's normal port, PostgreSQL kept running on a port, the node running pgpool. Used by
the steps (syncsteps), their repairs (syncrescue) and the task (sync)."""

from hatasks import output, pg, pgpool, remote


def say(*lines):
    """Progress lines, flushed at once: a resync runs for minutes and may be interrupted."""
    output.clear_progress()
    for line in lines:
        print(line, flush=True)


def run(ctx, h, cmd, user="postgres", **kw):
    """A command on H as postgres unless told (under --dry printed, not sent)."""
    return remote.run(ctx, h, cmd, user=user, **kw)


def probe(ctx, h, cmd, user="postgres"):
    """A read-only command on H that runs under --dry too and never raises on a non-zero exit."""
    return remote.run(ctx, h, cmd, user=user, probe=True, warn=True)


def normal_port(h):
    """The port H's PostgreSQL serves on outside a resync."""
    return int(h.vars.get("pg_port") or 5432)


def ensure_running(ctx, h, port):
    """PostgreSQL on H listening on PORT (restart it there when it runs on another port)."""
    st = pg.server_state(ctx, h)
    if st["running"] and st["port"] == port and pg.connectable(ctx, h, port):
        return
    if st["running"] and st["port"] and st["port"] != port and not remote.is_dry(ctx):
        return pg.move(ctx, h, st, port, None if port == normal_port(h) else port)
    if st["running"]:
        pg.stop(ctx, h, "fast")
    pg.start(ctx, h, None if port == normal_port(h) else port)


def pool_host(ctx, c):
    """The node running pgpool (resource state, else the process), or None."""
    rs = pgpool.resource_state(ctx, c)
    if rs and rs.get("node"):
        return rs["node"]
    where = pgpool.running_on(ctx, c)
    return where[0] if where else None
