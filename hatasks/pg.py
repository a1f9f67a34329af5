"""PostgreSQL on each DB backend: status, start/stop/restart, dumps, vacuum, row-count comparison.

Runbook: `psql -h db01` / `-h db02` (5.2.2), `pg_ctl [-o "-p PORT"] start|stop` and
`service postgres start|stop|restart`, `pg_dumpall -c -o -v > dump 2> log`,
`vacuumdb -a -f -z -v 2> log` (5.2.2.2 B/C and the routine cron jobs), and the per-table
row-count check that ends a data resync. Every backend is reached directly, never through
pgpool. `pg.dumpall` and `pg.vacuum` are cron-ready: `--quiet` prints nothing on success,
a failure is one line on stderr and a non-zero exit.
"""

import datetime
import re
import sys
import time

from hatasks import backends, checks, journal, output, parsers, remote, shell
from hatasks import compare as tables  # `compare` is this module's work function for pg.compare
from hatasks.base import helps, task
from hatasks.errors import HaError, StateError, UsageError

DEFAULT_DEST = "/var/lib/postgresql/dumps"
#: file names written by pg.dumpall / pg.vacuum (HOST_dumpall.YYYYMMDD-HHMMSS.sql and .log)
STAMP_FORMAT = "%Y%m%d-%H%M%S"
POLL_INTERVAL = 0.5
#: first server version without pg_dumpall -o (WITH OIDS was removed in PostgreSQL 12)
NO_OIDS_VERSION = 120000


# --------------------------------------------------------------------------- inputs


def db_host(ctx, name, option="host"):
    """Validate a --host value naming a DB backend: return the inventory Host."""
    host = checks.host(ctx, name, option, kind="db", noun="DB backend",
                       cluster_note="it is in cluster {}")
    for key in ("pgdata", "pg_bindir"):
        if not host.vars.get(key):
            raise UsageError(f"host {name}: inventory var {key} is not set")
    return host


def check_dest(dest, option="dest"):
    """An absolute directory path without shell metacharacters (``option`` names it)."""
    remote.check_value(option, dest)
    if not dest.startswith("/"):
        raise UsageError(f"--{option} {dest!r}: give an absolute directory on the host")
    if "/../" in dest + "/" or dest.endswith("/.."):
        raise UsageError(f"--{option} {dest!r}: no '..' in the path")
    return dest.rstrip("/") or "/"


def _default_port(host):
    return int(host.vars.get("pg_port") or 5432)


def _bin(host, name):
    return f"{host.vars['pg_bindir'].rstrip('/')}/{name}"


def _say(quiet, *lines):
    if not quiet:
        for line in lines:
            print(line, flush=True)


# --------------------------------------------------------------------------- parsers


_LOG_PARSERS = {"pg_log": parsers.parse_pg_log_errors, "dumpall": parsers.parse_pg_dumpall_log,
                "vacuum": parsers.parse_vacuumdb_log}


def log_errors(text, kind="pg_log"):
    """Error lines of a PostgreSQL (pg_log), pg_dumpall (dumpall) or vacuumdb (vacuum) log, as a
    list of strings (a parsed entry's cause, detail and hint appended)."""
    found = _LOG_PARSERS[kind](text)
    if isinstance(found, dict):
        found = found.get("errors", [])
    out = []
    for item in found or []:
        if isinstance(item, dict):
            line = item.get("line") or item.get("message") or str(item)
            for key in ("cause", "detail", "hint"):
                if item.get(key):
                    line += f" ({key}: {item[key]})"
            out.append(line)
        else:
            out.append(str(item))
    return out


# --------------------------------------------------------------------------- probes


def server_state(ctx, host):
    """Is PostgreSQL running on HOST and on which port: {"running", "pid", "port"} (probe).

    Reads `pg_ctl status` and the port line of postmaster.pid."""
    host = remote.host(ctx, host)
    pgdata = host.vars["pgdata"]
    cmd = (
        f"{shell.q(_bin(host, 'pg_ctl'))} -D {shell.q(pgdata)} status >/dev/null 2>&1; "
        f"rc=$?; echo \"rc=$rc\"; "
        f"if [ \"$rc\" = 0 ]; then head -n 4 {shell.q(pgdata + '/postmaster.pid')}; fi"
    )
    res = remote.run(ctx, host, cmd, user="postgres", probe=True, warn=True)
    return parse_server_state(res.stdout)


def parse_server_state(text):
    lines = [ln.strip() for ln in (text or "").splitlines()]
    rc = None
    for ln in lines:
        if ln.startswith("rc="):
            rc = ln[3:]
            break
    # pg_ctl status: 0 running, 3 not running, 4 no accessible data directory
    state = {"running": rc == "0", "pid": None, "port": None, "pg_ctl_rc": rc,
             "datadir": rc != "4"}
    if state["running"]:
        rest = lines[lines.index(f"rc={rc}") + 1:]
        if rest and rest[0].isdigit():
            state["pid"] = int(rest[0])
        if len(rest) >= 4 and rest[3].isdigit():
            state["port"] = int(rest[3])
    return state


def backend_info(ctx, host, port=None):
    """Connect to HOST's own PostgreSQL: version, port, database sizes (raises on failure)."""
    host = remote.host(ctx, host)
    port = port or _default_port(host)
    with remote.pg_connect(ctx, host, port=port, dbname="postgres") as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('server_version'), "
                        "current_setting('server_version_num')::int, "
                        "current_setting('port')::int")
            version, version_num, real_port = cur.fetchone()
            cur.execute("SELECT datname, pg_database_size(datname) FROM pg_database "
                        "WHERE NOT datistemplate ORDER BY datname")
            dbs = [{"name": n, "size": int(s)} for n, s in cur.fetchall()]
    return {"host": host.name, "status": "up", "port": real_port, "version": version,
            "version_num": version_num, "databases": dbs, "reason": None}


def server_version_num(ctx, host, port=None):
    host = remote.host(ctx, host)
    rows = remote.sql_rows(ctx, host, "SELECT current_setting('server_version_num')::int AS v",
                           port=port or _default_port(host))
    return int(rows[0]["v"])


def connectable(ctx, host, port):
    """True if a real connection to HOST:PORT works (SELECT 1)."""
    try:
        remote.sql_rows(ctx, host, "SELECT 1 AS one", port=port)
        return True
    except HaError:
        return False


# --------------------------------------------------------------------------- pg.status


def _backend_or_alternate(ctx, name):
    """backend_info on pg_port; if that fails but PostgreSQL runs on another port (a
    maintenance start such as 1234), the info from that port with a note."""
    host = remote.host(ctx, name)
    try:
        return backend_info(ctx, host)
    except HaError as first:
        try:
            st = server_state(ctx, host)
        except HaError:
            raise first from None
        if not st["running"] or not st["port"] or st["port"] == _default_port(host):
            raise
        info = backend_info(ctx, host, st["port"])
        info["note"] = (f"running on port {st['port']}, not pg_port {_default_port(host)}: "
                        f"applications and pgpool cannot reach it")
        return info


def status(ctx, cluster="db", host=None):
    """Every backend of CLUSTER (or HOST's alone), directly: {"backends": [...]} (down ones with
    the reason)."""
    inv = remote.inventory(ctx)
    hosts = [h for h in inv.cluster(cluster).hosts if host is None or h.name == host]
    results = remote.probe_many(ctx, hosts, lambda name: _backend_or_alternate(ctx, name))
    backends = []
    for h in hosts:
        r = results[h.name]
        if isinstance(r, HaError):
            backends.append({"host": h.name, "status": "down", "port": _default_port(h),
                             "version": None, "databases": [], "reason": r.message})
        else:
            backends.append(r)
    return {"cluster": inv.cluster(cluster).name, "backends": backends}


def _size(n):
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0


def status_table(data):
    rows = []
    for b in data["backends"]:
        dbs = ", ".join(f"{d['name']} {_size(d['size'])}" for d in b["databases"])
        if b.get("note"):
            dbs = f"{dbs} ({b['note']})"
        rows.append([b["host"], b["status"], b["port"], b["version"] or "",
                     dbs if b["status"] == "up" else b["reason"]])
    return (["host", "status", "port", "version", "databases / reason"], rows)


@task(name="status", help=helps("DB", {"format": True, "cluster": "the DB cluster (default db)",
                                        "host": "this backend only (default: every backend)"}))
def status_task(ctx, format=None, cluster="db", host=None):
    """Show every backend directly: reachable, version, port, database sizes.

    Runbook 5.2.2: "check that psql can connect to both backends directly". Exit 3 when a
    backend is down (it is listed with the reason). --host db01 (or `fab -H db01`) shows that
    backend alone; its cluster is the one shown.
    """
    fmt = output.resolve_format(ctx, format)
    if host is not None:
        cluster = checks.host(ctx, host, kind="db").cluster
    else:
        cluster = checks.cluster(ctx, cluster, "db").name
    data = status(ctx, cluster, host)
    output.emit(data, fmt, table=status_table)
    down = [b["host"] for b in data["backends"] if b["status"] != "up"]
    if down:
        raise StateError(f"PostgreSQL down or unreachable on {', '.join(down)}")


# --------------------------------------------------------------------------- start / stop


def ctl_log(host, port=None):
    """Where pg_ctl sends the server's early output (before the logging collector):
    inventory var pg_ctl_log, else Debian's /var/log/postgresql/pg_ctl.log."""
    return host.vars.get("pg_ctl_log") or "/var/log/postgresql/pg_ctl.log"


def start_command(host, port=None, timeout=60):
    port_opt = f" -o {shell.q(f'-p {port}')}" if port is not None else ""
    logfile = ctl_log(host, port or _default_port(host))
    return (
        f"mkdir -p {shell.q(logfile.rsplit('/', 1)[0])} && "
        f"{shell.q(_bin(host, 'pg_ctl'))} -D {shell.q(host.vars['pgdata'])}{port_opt} "
        f"-l {shell.q(logfile)} -w -t {int(timeout)} start"
    )


def stop_command(host, mode="fast", timeout=60):
    return (f"{shell.q(_bin(host, 'pg_ctl'))} -D {shell.q(host.vars['pgdata'])} -m {mode} "
            f"-w -t {int(timeout)} stop")


def recent_log_errors(ctx, host, port=None, lines=200):
    """Error lines from the end of pg_ctl's log and of the newest PGDATA/log/postgresql-*.log
    (the logging collector's daily file), probes."""
    pgdata = host.vars["pgdata"].rstrip("/")
    newest = (f"f=$(ls -1t {shell.q(pgdata + '/log')}/postgresql-*.log 2>/dev/null | head -n 1); "
              f"[ -n \"$f\" ] && tail -n {int(lines)} \"$f\"")
    commands = [f"tail -n {int(lines)} {shell.q(ctl_log(host, port))}", newest]
    found = []
    for cmd in commands:
        res = remote.run(ctx, host, cmd, user="postgres", probe=True, warn=True)
        if res.exited == 0:
            found.extend(log_errors(res.stdout))
    seen, out = set(), []
    for ln in found:
        if ln not in seen:
            seen.add(ln)
            out.append(ln)
    return out[-10:]


def pgpool_backend_status(ctx, host):
    """This backend's status in SHOW pool_nodes ("up"/"down"); None if pgpool does not answer."""
    return backends.backend_status(ctx, host)


def guard_stop(ctx, host, force=False, quiet=False):
    """Refuse to stop a backend that pgpool still has up (unless force)."""
    st = pgpool_backend_status(ctx, host)
    if st == "up":
        msg = (f"{host.name} is still attached (up) in pgpool: detach it first "
               f"(inv pgpool.switch --node {host.name}) or pass --force")
        if not force:
            raise HaError(msg, HaError.REFUSED)
        print(f"warning: {msg}; going on (--force)", file=sys.stderr, flush=True)
    elif st is None and not quiet:
        print("note: pgpool did not answer; cannot tell whether this backend is attached",
              file=sys.stderr, flush=True)
    return st


def start(ctx, host, port=None, timeout=60, quiet=False):
    """Start PostgreSQL on HOST (optionally on another port) and verify a real connection."""
    host = remote.host(ctx, host)
    want = port or _default_port(host)
    before = server_state(ctx, host)
    if before["running"]:
        if before["port"] == want:
            if not connectable(ctx, host, want):
                raise StateError(f"{host.name}: PostgreSQL runs (pid {before['pid']}) on port "
                                 f"{want} but refuses connections (starting up or shutting down?)")
            _say(quiet, f"{host.name}: PostgreSQL already running on port {want} "
                        f"(pid {before['pid']})")
            return {"host": host.name, "port": want, "started": False}
        raise StateError(f"{host.name}: PostgreSQL already runs on port {before['port']} "
                         f"(pid {before['pid']}), not {want}: use pg.restart --port {want}")
    _say(quiet, f"{host.name}: PostgreSQL is stopped; starting on port {want}")
    res = remote.run(ctx, host, start_command(host, port, timeout), user="postgres",
                     warn=True, timeout=timeout + 30)
    if remote.is_dry(ctx):
        return {"host": host.name, "port": want, "started": False, "dry": True}
    if res.exited != 0:
        errors = recent_log_errors(ctx, host, port)
        for ln in errors:
            print(f"  {host.name} log: {ln}", file=sys.stderr, flush=True)
        why = errors[-1] if errors else _last_line(res)
        raise StateError(f"{host.name}: PostgreSQL did not start on port {want}: {why}")
    deadline = time.monotonic() + timeout
    while not connectable(ctx, host, want):
        if time.monotonic() > deadline:
            raise HaError(f"{host.name}: pg_ctl said started, but no connection on port {want} "
                          f"within {timeout}s", HaError.NOT_CONVERGED)
        time.sleep(POLL_INTERVAL)
    _say(quiet, f"{host.name}: PostgreSQL accepts connections on port {want}")
    return {"host": host.name, "port": want, "started": True}


def stop(ctx, host, mode="fast", timeout=60, quiet=False):
    """Stop PostgreSQL on HOST with pg_ctl -m MODE and verify it is down (no guard here)."""
    host = remote.host(ctx, host)
    before = server_state(ctx, host)
    if not before["running"]:
        check_datadir_matches(ctx, host, before)
        _say(quiet, f"{host.name}: PostgreSQL is already stopped")
        return {"host": host.name, "stopped": False}
    _say(quiet, f"{host.name}: PostgreSQL running on port {before['port']} (pid {before['pid']}); "
                f"stopping ({mode})")
    res = remote.run(ctx, host, stop_command(host, mode, timeout), user="postgres",
                     warn=True, timeout=timeout + 30)
    if remote.is_dry(ctx):
        return {"host": host.name, "stopped": False, "dry": True}
    after = server_state(ctx, host)
    if after["running"]:
        why = _last_line(res)
        raise HaError(f"{host.name}: PostgreSQL still running after pg_ctl -m {mode} stop: {why}",
                      HaError.NOT_CONVERGED)
    if before["port"] and connectable(ctx, host, before["port"]):
        raise HaError(f"{host.name}: port {before['port']} still accepts connections",
                      HaError.NOT_CONVERGED)
    _say(quiet, f"{host.name}: PostgreSQL stopped")
    return {"host": host.name, "stopped": True, "port": before["port"]}


def move(ctx, host, before, want, port=None, timeout=60):
    """PostgreSQL running on HOST (server_state BEFORE) on another port, restarted on WANT (PORT:
    the -p to start with, None for the inventory's) in one round trip: pg_ctl -w stop, then -w
    start. Then checked as stop and start check: a real connection on WANT, none left on the
    old port. What failed is read back only when the command failed."""
    old = before["port"]
    print(f"{host.name}: PostgreSQL running on port {old} (pid {before['pid']}); restarting it "
          f"on port {want} (fast)", flush=True)
    res = remote.run(ctx, host, f"{stop_command(host, 'fast', timeout)} && "
                                f"{start_command(host, port, timeout)}",
                     user="postgres", warn=True, timeout=2 * timeout + 30)
    if res.exited != 0:
        now = server_state(ctx, host)
        if now["running"] and now["port"] == old:
            raise HaError(f"{host.name}: PostgreSQL still running on port {old} after pg_ctl -m "
                          f"fast stop: {_last_line(res)}", HaError.NOT_CONVERGED)
        errors = recent_log_errors(ctx, host, want)
        raise StateError(f"{host.name}: PostgreSQL did not start on port {want}: "
                         f"{errors[-1] if errors else _last_line(res)}")
    deadline = time.monotonic() + timeout
    while not connectable(ctx, host, want):
        if time.monotonic() > deadline:
            raise HaError(f"{host.name}: pg_ctl said started, but no connection on port {want} "
                          f"within {timeout}s", HaError.NOT_CONVERGED)
        time.sleep(0.2)
    if connectable(ctx, host, old):
        raise HaError(f"{host.name}: port {old} still accepts connections after the restart on "
                      f"{want}", HaError.NOT_CONVERGED)
    print(f"{host.name}: PostgreSQL accepts connections on port {want} (none on {old})", flush=True)


def check_datadir_matches(ctx, host, state):
    """Refuse to call a server stopped when the inventory's pgdata is not what runs.

    pg_ctl only knows the data directory it is given: a wrong ``pgdata`` reads as "not
    running" while PostgreSQL serves from another directory."""
    pgdata = host.vars["pgdata"]
    if not state.get("datadir", True):
        raise StateError(f"{host.name}: {pgdata} is not an accessible PostgreSQL data directory "
                         f"(pg_ctl status exit 4): check the inventory var pgdata")
    port = _default_port(host)
    if not remote.is_dry(ctx) and connectable(ctx, host, port):
        raise StateError(f"{host.name}: PostgreSQL answers on port {port} but not from {pgdata}: "
                         f"the inventory var pgdata does not name the running server's data "
                         f"directory")


def _last_line(res):
    lines = (res.stderr or res.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit {res.exited}"


def _args(**kw):
    return {k: v for k, v in kw.items() if v is not None}


@task(name="start", help=helps("DB", {
    "host": "DB host (e.g. db01)",
    "port": "port to start on (e.g. 1234 to keep applications out); default pg_port",
    "timeout": "seconds to wait (default 60)", "yes": True}))
def start_task(ctx, host, port=None, timeout=60, yes=False):
    """Start PostgreSQL on a backend (pg_ctl -w start), verified by a real connection.

    Runbook 5.2.2 (PostgreSQL recovery: `service postgres start`) and 5.2.2.2 B/C
    (`pg_ctl -o "-p 1234" start`). When it does not start, the last errors of the
    PostgreSQL log are printed.
    """
    h = db_host(ctx, host)
    port = checks.port(port)
    timeout = checks.positive("timeout", timeout, int)
    with journal.operation(ctx, h.cluster, "pg.start", _args(host=h.name, port=port), yes=yes):
        return start(ctx, h, port, timeout)



@task(name="stop", help=helps("DB", {"host": "DB host", "mode": True,
            "force": "stop even if pgpool still has this backend attached",
            "timeout": "seconds to wait (default 60)", "yes": True}))
def stop_task(ctx, host, mode="fast", force=False, timeout=60, yes=False):
    """Stop PostgreSQL on a backend (pg_ctl -m MODE stop), verified.

    Runbook 5.2.1 table 5-3 (PG restart/stop after the pgpool switch). Refused while
    pgpool still has the backend up: detach it first (pgpool.switch) or pass --force.
    """
    h = db_host(ctx, host)
    checks.mode(mode)
    timeout = checks.positive("timeout", timeout, int)
    guard_stop(ctx, h, force)
    args = _args(host=h.name, mode=mode, force=force or None)
    with journal.operation(ctx, h.cluster, "pg.stop", args, yes=yes):
        return stop(ctx, h, mode, timeout)



@task(name="restart",
      help=helps("DB", {"host": "DB host", "port": "port to start on (default pg_port)",
            "mode": True,
            "force": "restart even if pgpool still has this backend attached",
            "timeout": "seconds to wait for each step (default 60)",
            "yes": True}))
def restart_task(ctx, host, port=None, mode="fast", force=False, timeout=60, yes=False):
    """Restart PostgreSQL on a backend (stop, then start on PORT), verified.

    Runbook `service postgres restart`; 5.2.2.2 B: `pg_ctl stop; pg_ctl -o "-p 1234" start`.
    """
    h = db_host(ctx, host)
    port = checks.port(port)
    checks.mode(mode)
    timeout = checks.positive("timeout", timeout, int)
    guard_stop(ctx, h, force)
    args = _args(host=h.name, port=port, mode=mode, force=force or None)
    with journal.operation(ctx, h.cluster, "pg.restart", args, yes=yes):
        stop(ctx, h, mode, timeout)
        return start(ctx, h, port, timeout)


# --------------------------------------------------------------------------- dumpall / vacuum


def dump_names(host_name, stamp):
    """(final sql, final log, partial sql, partial log, failed log) file names for one dump."""
    base = f"{host_name}_dumpall.{stamp}"
    return {"sql": f"{base}.sql", "log": f"{base}.log", "tmp_sql": f".{base}.sql.partial",
            "tmp_log": f".{base}.log.partial", "failed_log": f"{base}.FAILED.log"}


def dump_pattern(host_name):
    return re.compile(rf"^{re.escape(host_name)}_dumpall\.(\d{{8}}-\d{{6}})\.sql$")


def prune_plan(names, host_name, keep):
    """Files to delete so that only the KEEP newest complete dumps of HOST_NAME remain.

    Only names that match our own pattern (HOST_dumpall.YYYYMMDD-HHMMSS.sql and its .log)
    are considered; anything else in the directory is never touched."""
    if keep is None:
        return []
    pat = dump_pattern(host_name)
    stamps = sorted({m.group(1) for m in map(pat.match, names) if m})
    old = stamps[:-keep] if keep > 0 else stamps
    present = set(names)
    out = []
    for s in old:
        for suffix in (".sql", ".log"):
            name = f"{host_name}_dumpall.{s}{suffix}"
            if name in present:
                out.append(name)
    return out


def dumpall_flags(version_num):
    """pg_dumpall flags by server version: -c -v, plus -o before PostgreSQL 12."""
    flags = ["-c", "-v"]
    if version_num < NO_OIDS_VERSION:
        flags.append("-o")
    return flags


def dumpall_command(host, port, flags, dest, tmp_sql, tmp_log):
    return (
        f"umask 077 && cd {shell.q(dest)} && {shell.q(_bin(host, 'pg_dumpall'))} -p {int(port)} "
        f"{' '.join(flags)} -f {shell.q(tmp_sql)} 2> {shell.q(tmp_log)}"
    )


def _refuse_if_locked(ctx, cluster):
    journal.check_unlocked(ctx, cluster)


def _stamp():
    return datetime.datetime.now().strftime(STAMP_FORMAT)


def _fresh_stamp(ctx, host, dest, names_of):
    """A stamp whose file names are not in DEST yet (two runs in one second never collide)."""
    res = remote.run(ctx, host, f"ls -1A {shell.q(dest)}", user="postgres", probe=True, warn=True)
    present = set(res.stdout.split())
    for _ in range(5):
        stamp = _stamp()
        if not present & set(names_of(stamp).values()):
            return stamp
        time.sleep(1)
    raise StateError(f"{host.name}: files for stamp {stamp} already exist in {dest}")


def dumpall(ctx, host, port=None, dest=DEFAULT_DEST, keep=None, quiet=False):
    """Dump every database of HOST into DEST (dated .sql + .log), checked, then pruned.

    Written as .HOST_dumpall.STAMP.sql.partial / .log.partial, renamed to
    HOST_dumpall.STAMP.sql / .log only when pg_dumpall exited 0 and its log has no errors.
    On failure the partial dump is deleted and the log kept as HOST_dumpall.STAMP.FAILED.log.
    """
    host = remote.host(ctx, host)
    port = port or _default_port(host)
    _refuse_if_locked(ctx, host.cluster)
    try:
        version = server_version_num(ctx, host, port)
    except HaError as exc:
        # a host that does not answer ssh is UNREACHABLE (4), a server that refuses is STATE (3)
        code = HaError.UNREACHABLE if exc.code == HaError.UNREACHABLE else HaError.STATE
        raise HaError(f"{host.name}: pg_dumpall not started: cannot connect on port {port}: "
                      f"{exc.message}", code) from None
    flags = dumpall_flags(version)
    remote.run(ctx, host, f"mkdir -p -m 700 {shell.q(dest)}", user="postgres")
    stamp = _fresh_stamp(ctx, host, dest, lambda st: dump_names(host.name, st))
    names = dump_names(host.name, stamp)
    cmd = dumpall_command(host, port, flags, dest, names["tmp_sql"], names["tmp_log"])
    res = remote.run(ctx, host, cmd, user="postgres", warn=True)
    if remote.is_dry(ctx):
        return {"host": host.name, "dry": True}
    d = shell.q(dest)
    log = remote.run(ctx, host, f"cat {d}/{shell.q(names['tmp_log'])}", user="postgres", warn=True)
    errors = log_errors(log.stdout, "dumpall")
    if res.exited != 0 or errors or log.exited != 0:
        remote.run(ctx, host,
                   f"rm -f -- {d}/{shell.q(names['tmp_sql'])}; "
                   f"mv -f -- {d}/{shell.q(names['tmp_log'])} {d}/{shell.q(names['failed_log'])}",
                   user="postgres", warn=True)
        why = errors[-1] if errors else f"pg_dumpall exited {res.exited}"
        raise HaError(f"{host.name}: pg_dumpall failed: {why} (log: {dest}/{names['failed_log']})",
                      HaError.STATE)
    remote.run(ctx, host,
               f"mv -- {d}/{shell.q(names['tmp_log'])} {d}/{shell.q(names['log'])} && "
               f"mv -- {d}/{shell.q(names['tmp_sql'])} {d}/{shell.q(names['sql'])}",
               user="postgres")
    removed = prune(ctx, host, dest, keep)
    size = remote.run(ctx, host, f"stat -c %s {d}/{shell.q(names['sql'])}", user="postgres",
                      probe=True, warn=True).stdout.strip()
    result = {"host": host.name, "port": port, "server_version_num": version, "flags": flags,
              "dump": f"{dest}/{names['sql']}", "log": f"{dest}/{names['log']}",
              "bytes": int(size) if size.isdigit() else None, "removed": removed}
    _say(quiet, f"{host.name}: dump {result['dump']} ({result['bytes']} bytes), log {result['log']}"
         + (f"; removed {len(removed)} old file(s)" if removed else ""))
    return result


def prune(ctx, host, dest, keep):
    if keep is None:
        return []
    res = remote.run(ctx, host, f"ls -1A {shell.q(dest)}", user="postgres", probe=True, warn=True)
    doomed = prune_plan(res.stdout.split(), host.name, keep)
    if doomed:
        files = " ".join(shell.q(n) for n in doomed)
        remote.run(ctx, host, f"cd {shell.q(dest)} && rm -f -- {files}", user="postgres")
    return doomed


@task(name="dumpall", help=helps("DB", {
    "host": "DB host to dump", "port": "PostgreSQL port (default pg_port; 1234 in a resync)",
    "dest": f"directory on the host (default {DEFAULT_DEST})",
    "keep": "keep only the N newest dumps of this host (default: keep all)",
    "quiet": True}))
def dumpall_task(ctx, host, port=None, dest=DEFAULT_DEST, keep=None, quiet=False):
    """Dump every database of a backend to a dated file with its log (pg_dumpall -c -v).

    Runbook 5.2.2.2 B/C `pg_dumpall -p PORT -c -o -v > dump 2> log` (no -o on PostgreSQL
    12+) and the routine cron backup. Files: DEST/HOST_dumpall.YYYYMMDD-HHMMSS.sql and .log,
    renamed from a hidden .partial name only when pg_dumpall exited 0 and the log has no
    errors. Holds the cluster lock (refused while another operation holds it) and is
    journaled; being a routine job it asks no confirmation.
    """
    h = db_host(ctx, host)
    port = checks.port(port)
    dest = check_dest(dest)
    if keep is not None:
        keep = checks.whole("keep", keep, 1, 100000, "dumps")
    # a routine (cron) job: no confirmation, but it holds the lock and is journaled like
    # every operation, so no scenario starts while a dump runs and vice versa
    args = {"host": h.name, "port": port, "dest": dest, "keep": keep}
    with journal.operation(ctx, h.cluster, "pg.dumpall", args, yes=True):
        return dumpall(ctx, h, port, dest, keep, quiet)



def vacuum_names(host_name, stamp):
    base = f"{host_name}_vacuumdb.{stamp}"
    return {"log": f"{base}.log", "tmp_log": f".{base}.log.partial",
            "failed_log": f"{base}.FAILED.log"}


def vacuum_command(host, port, dest, tmp_log):
    return (f"umask 077 && cd {shell.q(dest)} && {shell.q(_bin(host, 'vacuumdb'))} -p {int(port)} "
            f"-a -f -z -v > {shell.q(tmp_log)} 2>&1")


def vacuum(ctx, host, port=None, dest=DEFAULT_DEST, quiet=False, timeout=None):
    """vacuumdb -a -f -z -v on HOST, its log in DEST (HOST_vacuumdb.STAMP.log), checked."""
    host = remote.host(ctx, host)
    port = port or _default_port(host)
    _refuse_if_locked(ctx, host.cluster)
    remote.run(ctx, host, f"mkdir -p -m 700 {shell.q(dest)}", user="postgres")
    stamp = _fresh_stamp(ctx, host, dest, lambda st: vacuum_names(host.name, st))
    names = vacuum_names(host.name, stamp)
    res = remote.run(ctx, host, vacuum_command(host, port, dest, names["tmp_log"]),
                     user="postgres", warn=True, timeout=timeout)
    if remote.is_dry(ctx):
        return {"host": host.name, "dry": True}
    d = shell.q(dest)
    log = remote.run(ctx, host, f"cat {d}/{shell.q(names['tmp_log'])}", user="postgres", warn=True)
    errors = log_errors(log.stdout, "vacuum")
    if res.exited != 0 or errors:
        remote.run(ctx, host, f"mv -f -- {d}/{shell.q(names['tmp_log'])} {d}/{shell.q(names['failed_log'])}",
                   user="postgres", warn=True)
        why = errors[-1] if errors else f"vacuumdb exited {res.exited}"
        raise HaError(f"{host.name}: vacuumdb failed: {why} (log: {dest}/{names['failed_log']})",
                      HaError.STATE)
    remote.run(ctx, host, f"mv -- {d}/{shell.q(names['tmp_log'])} {d}/{shell.q(names['log'])}",
               user="postgres")
    _say(quiet, f"{host.name}: vacuumdb -a -f -z done on port {port}, log {dest}/{names['log']}")
    return {"host": host.name, "port": port, "log": f"{dest}/{names['log']}"}


@task(name="vacuum",
      help=helps("DB", {"host": "DB host", "port": "PostgreSQL port (default pg_port)",
            "dest": f"directory for the log (default {DEFAULT_DEST})",
            "quiet": True}))
def vacuum_task(ctx, host, port=None, dest=DEFAULT_DEST, quiet=False):
    """Full vacuum and analyze of every database of a backend (vacuumdb -a -f -z -v).

    Runbook 5.2.2.2 B/C `vacuumdb -p PORT -a -f -z -v 2> log` and the routine cron job; the
    log goes to DEST/HOST_vacuumdb.YYYYMMDD-HHMMSS.log. Holds the cluster lock (refused while
    another operation holds it) and is journaled; being a routine job it asks no confirmation.
    """
    h = db_host(ctx, host)
    port = checks.port(port)
    dest = check_dest(dest)
    args = {"host": h.name, "port": port, "dest": dest}
    with journal.operation(ctx, h.cluster, "pg.vacuum", args, yes=True):
        return vacuum(ctx, h, port, dest, quiet)


# --------------------------------------------------------------------------- compare

def compare(ctx, cluster="db", hosts=None, ports=None):
    """Exact row counts of every table on every backend of CLUSTER, compared.

    Returns {"hosts", "tables": [...], "differences": [...], "equal": bool}. A backend that
    cannot be read raises (a comparison with a missing side proves nothing)."""
    return tables.row_count_report(ctx, cluster, hosts, ports)


def compare_table(data):
    hosts = data["hosts"]
    rows = [[r["database"], r["table"] or "", *[("-" if r["counts"][h] is None else r["counts"][h])
                                             for h in hosts], "yes" if r["equal"] else "NO"]
            for r in data["tables"]]
    return (["database", "table", *hosts, "equal"], rows)


@task(name="compare", help=helps("DB", {"format": True, "cluster": "the DB cluster (default db)"}))
def compare_task(ctx, format=None, cluster="db"):
    """Compare exact row counts per table of every database on both backends.

    Runbook 5.2.2.2 C: "row counts per table match the source". Exit 3 on any difference
    (a table whose counts differ, or that exists on one backend only).
    """
    fmt = output.resolve_format(ctx, format)
    cluster = checks.cluster(ctx, cluster, "db").name
    data = compare(ctx, cluster)
    output.emit(data, fmt, table=compare_table)
    if not data["equal"]:
        first = data["differences"][0]
        what = f"{first['database']}.{first['table']}" if first["table"] else first["database"]
        counts = ", ".join(f"{h}={n}" for h, n in first["counts"].items())
        raise StateError(f"backends differ in {len(data['differences'])} table(s), "
                         f"first: {what} ({counts})")
