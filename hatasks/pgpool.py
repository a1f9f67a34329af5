"""pgpool-II: replication status, newest-data record, config check, stop/start, switch/recover.

Runbook: `show pool_status` (now `SHOW pool_nodes`), `pgpool -n` (config check),
`pgpool -m smart|fast|immediate stop` / start, `pgpool -s master|secondary switch` (now
`pcp_detach_node`), and online recovery (`pcp_recovery_node`, new since 2008).
The manual's bold warning is built in: whenever pgpool is seen degenerated, and before
anything stops it, the backend holding the newest data is journaled with its evidence
(`inv history`); when pgpool no longer answers, `pgpool.status` shows that record.
pcp commands run as postgres on a DB host with its ~/.pcppass (`-w`): no password is
ever on a command line.
"""

import re
import sys
import time

from hatasks import (backends, checks, compare, crm, divergence, journal, newest, output, parsers,
                     remote, salvage, shell)
from hatasks.base import helps, task
from hatasks.errors import HaError, StateError, UnreachableError, UsageError

SIDES = {"master": 0, "secondary": 1}
POLL_INTERVAL = 0.5
#: the port and resource polls (an `ss` or a `crm_mon -1` on the host, 20-80 ms): a start
#: or stop is seen within 0.1 s, not up to 0.5 s later
LISTEN_POLL = 0.1
#: pgpool binary used for -n checks and manual stop/start
PGPOOL = "/usr/sbin/pgpool"


# --------------------------------------------------------------------------- inputs


def db_host(ctx, name, option="host"):
    """Validate a --host naming a DB host: (Host, Cluster)."""
    host = checks.host(ctx, name, option, kind="db")
    return host, remote.inventory(ctx).cluster(host.cluster)


def resolve_node(ctx, node=None, side=None, cluster="db"):
    """--node (host name or pgpool node id) or --side master|secondary -> (Host, node id)."""
    if (node is None) == (side is None):
        raise UsageError("give exactly one of --node (host or pgpool node id) or --side")
    c = backends.pgpool_cluster(ctx, cluster)
    if side is not None:
        if side not in SIDES:
            raise UsageError(f"--side must be master or secondary, not {side!r}")
        node = SIDES[side]
    remote.check_value("node", node)
    host = remote.inventory(ctx).pgpool_node(c.name, node)
    if host.pgpool_node_id is None:
        raise UsageError(f"host {host.name}: inventory var pgpool_node_id is not set")
    return host, host.pgpool_node_id


def _port(c, key, default):
    return int(c.vars.get(key) or default)


def _conf(c):
    return c.vars.get("pgpool_conf") or "/etc/pgpool2/pgpool.conf"


# --------------------------------------------------------------------------- SHOW pool_nodes


def status(ctx, cluster="db", record=True):
    """pgpool's view plus the newest-data record.

    Reachable: the parsed SHOW pool_nodes ("reachable": True); when degenerated, the
    newest backend is journaled (record=True). Not reachable: {"reachable": False,
    "error", "recorded": the last newest-data record or None}."""
    c = backends.pgpool_cluster(ctx, cluster)
    try:
        data = backends.read_pool_nodes(ctx, c.name)
    except HaError as exc:
        return {"cluster": c.name, "reachable": False, "error": exc.message,
                "backends": [], "degenerated": None, "newest": None,
                "recorded": journal.newest(ctx, c.name)}
    data = {k: v for k, v in data.items() if k != "rows"}
    data["cluster"] = c.name
    data["reachable"] = True
    if data.get("degenerated") and data.get("newest") and record:
        journal.record_newest(ctx, c.name, data["newest"],
                              dict(backends.evidence(data), reason="pgpool.status saw pgpool degenerated"))
    data["recorded"] = journal.newest(ctx, c.name)
    data["stale_attach"] = journal.stale_attached(ctx, c.name)
    return data


def status_table(data):
    if not data.get("reachable"):
        rec = data.get("recorded")
        rows = [["pgpool", f"DOWN: {data.get('error')}"]]
        if rec:
            rows += [["recorded newest", rec.get("newest")], ["recorded at", rec.get("ts")],
                     ["evidence", rec.get("evidence")]]
        else:
            rows += [["recorded newest", "none: nothing tells which backend holds the newest data"]]
        return [("pgpool", (["item", "value"], rows))]
    rows = [[b.get("node_id"), b.get("host"), b.get("port"), b.get("status"), b.get("role")]
            for b in data.get("backends", [])]
    stale = data.get("stale_attach") or []
    in_sync = ("NOT in sync: " + ", ".join(stale) + " attached without resync (stale-attach); "
               "pgpool.recover or sync.resync" if stale else "all backends in sync")
    summary = [["degenerated", "yes" if data.get("degenerated") else "no"],
               ["newest data", data.get("newest") or (in_sync
                                                      if not data.get("degenerated") else "?")],
               ["read via", data.get("via")]]
    rec = data.get("recorded") or {}
    if rec.get("contradicted_by"):
        later = ", ".join(f"{c.get('newest')} at {c.get('ts')}" for c in rec["contradicted_by"])
        summary.append(["recorded newest", f"{rec.get('newest')} at {rec.get('ts')} (first view "
                                           f"since in sync), CONTRADICTED later by {later}: "
                                           f"split brain? resync only with --source"])
    return [("backends", (["node_id", "host", "port", "status", "role"], rows)),
            ("replication", (["item", "value"], summary))]


@task(name="status",
      help=helps("DB", {"format": True, "cluster": "DB cluster, or all (default db)"}))
def status_task(ctx, format=None, cluster="db"):
    """Show pgpool's backends (up/down, role), degenerated or not, and the newest-data backend.

    Runbook 5.2.2 `show pool_status` (now SHOW pool_nodes through the VIP). Degenerated:
    the newest backend is journaled (the bold warning). pgpool down: the recorded newest
    backend is shown with its time and evidence, and the exit code is non-zero.
    """
    fmt = output.resolve_format(ctx, format)
    if cluster == checks.ALL_CLUSTERS:
        return checks.each_cluster(ctx, "db", fmt, lambda name: status_task.body(ctx, fmt, name))
    data = status(ctx, cluster)
    output.emit(data, fmt, table=status_table)
    if not data["reachable"]:
        rec = data.get("recorded")
        shown = (f"recorded newest backend: {rec.get('newest')} at {rec.get('ts')}" if rec
                 else "no newest-data record")
        raise StateError(f"pgpool is down ({data['error']}); {shown}")
    if data.get("degenerated"):
        down = ", ".join(b.get("host") for b in data.get("backends", []) if b.get("status") != "up")
        raise StateError(f"pgpool is degenerated (backend down: {down or '?'}); newest data: "
                         f"{data.get('newest') or '?'}")


# --------------------------------------------------------------------------- where pgpool runs


def listening(ctx, host, port):
    """True if something listens on TCP PORT on HOST (ss, probe)."""
    res = remote.run(ctx, host, f"ss -Hltn {shell.q(f'sport = :{int(port)}')}", probe=True, warn=True)
    if res.exited != 0:
        raise StateError(f"{getattr(host, 'name', host)}: ss failed: {res.stderr.strip()}")
    return bool(res.stdout.strip())


def listeners(ctx, host, port):
    """Who holds TCP PORT on HOST, for an error: "still listening: pgpool pid 17194, 17241,
    ... (21 in all)" (ss -ltnp, probe; the lowest pids, pgpool's main among them, first)."""
    res = remote.run(ctx, host, f"ss -Hltnp {shell.q(f'sport = :{int(port)}')}", probe=True,
                     warn=True)
    found = sorted({(int(p), n) for n, p in re.findall(r'\("([^"]+)",pid=(\d+)', res.stdout or "")})
    if not found:
        return "ss names no process"
    pids, names = [str(p) for p, _ in found], "/".join(sorted({n for _, n in found}))
    more = f", ... ({len(pids)} in all)" if len(pids) > 4 else ""
    return f"still listening: {names} pid {', '.join(pids[:4])}{more}"


def resource_state(ctx, c):
    """The pgpool resource in crm_mon: {"node", "role", "managed", "maintenance"} or None
    when the cluster has no pgpool_resource var. Node None = not running."""
    rid = c.vars.get("pgpool_resource")
    if not rid:
        return None
    state = crm.crm_status(ctx, c.name)
    found = {"id": rid, "node": None, "role": None, "managed": True, "maintenance": False,
             "seen": False}
    for r in state.get("resources", []):
        if r.get("id") == rid:
            found["seen"] = True
            found["role"] = r.get("role")
            if r.get("role") in ("Started", "Promoted", "Unpromoted") and r.get("node"):
                found["node"] = r.get("node")
            if r.get("managed") is False:
                found["managed"] = False
            if r.get("maintenance"):
                found["maintenance"] = True
    return found


def running_on(ctx, c):
    """Host names where pgpool runs: Pacemaker's view plus who listens on pgpool_port."""
    where = set()
    try:
        rs = resource_state(ctx, c)
    except HaError:   # cluster stack down everywhere (e.g. a resync): the sockets still tell
        rs = None
    if rs and rs["node"]:
        where.add(rs["node"])
    port = _port(c, "pgpool_port", 9999)
    for name, res in remote.probe_many(ctx, c.hosts, lambda n: listening(ctx, n, port)).items():
        if res is True:
            where.add(name)
    return sorted(where)


# --------------------------------------------------------------------------- pgpool.check

CHECK_SCRIPT = r"""
conf={conf}; wait_s={wait}; port={port}; pcp_port={pcp_port}
if [ ! -r "$conf" ]; then
  echo "@@result missing"; echo "FATAL: cannot read configuration file $conf"; exit 0
fi
tmp=$(mktemp -d /tmp/hatasks-pgpool-check.XXXXXX) || exit 90
pid=
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT HUP INT TERM
confdir=$(dirname "$conf")
cp -p "$confdir"/* "$tmp"/ 2>/dev/null
busy() {{ [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }}
n=0; while busy "$port" && [ $n -lt 50 ]; do port=$((port + 1)); n=$((n + 1)); done
n=0; while busy "$pcp_port" && [ $n -lt 50 ]; do pcp_port=$((pcp_port + 1)); n=$((n + 1)); done
{{ cat "$conf"; printf '\n# hatasks pgpool.check: test instance settings (last value wins)\n'
  printf "port = %s\npcp_port = %s\n" "$port" "$pcp_port"
  printf "listen_addresses = 'localhost'\npcp_listen_addresses = 'localhost'\n"
  for k in socket_dir unix_socket_directories pcp_socket_dir wd_ipc_socket_dir logdir; do
    printf "%s = '%s'\n" "$k" "$tmp"
  done
  printf "pid_file_name = '%s/pgpool.pid'\nmemqcache_oiddir = '%s/oiddir'\n" "$tmp" "$tmp"
  printf "use_watchdog = off\nhealth_check_period = 0\n"
  printf "logging_collector = off\nlog_destination = 'stderr'\n"
  printf "failover_command = ''\nfailback_command = ''\nfollow_primary_command = ''\n"
}} > "$tmp/pgpool.conf.check"
set -- -n -D -f "$tmp/pgpool.conf.check"
[ -e "$tmp/pcp.conf" ] && set -- "$@" -F "$tmp/pcp.conf"
[ -e "$tmp/pool_hba.conf" ] && set -- "$@" -a "$tmp/pool_hba.conf"
{pgpool} "$@" </dev/null >"$tmp/out" 2>&1 &
pid=$!
n=0; result=exited
while [ $n -lt $((wait_s * 5)) ]; do
  if grep -q 'successfully started' "$tmp/out"; then result=started; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2; n=$((n + 1))
done
if kill -0 "$pid" 2>/dev/null; then
  [ "$result" = started ] || result=timeout
  kill -TERM "$pid" 2>/dev/null
  n=0; while kill -0 "$pid" 2>/dev/null && [ $n -lt 50 ]; do sleep 0.2; n=$((n + 1)); done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
fi
wait "$pid"; rc=$?; pid=
echo "@@result $result"; echo "@@rc $rc"; echo "@@port $port"
cat "$tmp/out"
"""


def check_script(c, wait=15):
    port = _port(c, "pgpool_port", 9999)
    pcp = _port(c, "pcp_port", 9898)
    test_port = port + 20000 if port + 20000 <= 65535 else port - 20000
    test_pcp = pcp + 20000 if pcp + 20000 <= 65535 else pcp - 20000
    return CHECK_SCRIPT.format(conf=shell.q(_conf(c)), wait=int(wait), port=test_port,
                               pcp_port=test_pcp, pgpool=shell.q(c.vars.get("pgpool_bin") or PGPOOL))


#: Pure: the check script's output -> {"ok", "result", "rc", "errors", "output"}.
parse_check = parsers.parse_pgpool_check_script


def check(ctx, host, wait=15):
    """Run pgpool -n on HOST with the real config and temporary ports/pid/sockets/logdir.

    Refused where pgpool runs. Returns parse_check's dict (+ "host")."""
    h, c = db_host(ctx, host)
    where = running_on(ctx, c)
    if h.name in where:
        others = [x.name for x in c.hosts if x.name not in where]
        raise HaError(f"pgpool runs on {h.name}: a test instance there would collide with the live "
                      f"one; check on a node where it does not run ({', '.join(others) or 'none'})",
                      HaError.REFUSED)
    res = remote.run(ctx, h, check_script(c, wait), user="postgres", probe=True, warn=True,
                     timeout=wait + 30)
    data = parse_check(res.stdout)
    data["host"] = h.name
    data["config"] = _conf(c)
    return data


@task(name="check", help=helps("DB", {"host": "DB host where pgpool is NOT running",
                          "wait": "seconds to wait for pgpool to start (default 15)",
                          "format": True}))
def check_task(ctx, host, wait=15, format=None):
    """Check pgpool's configuration by starting it in the foreground (pgpool -n).

    Runbook 5.2.2 pgpool recovery: `pgpool -n` on the failed host shows the config error.
    The test instance uses a copy of the host's real pgpool.conf (and pcp.conf,
    pool_hba.conf) with settings appended for its own ports, pid file, sockets and logdir in
    a temporary directory, no watchdog, no health check and no failover commands, so it
    never disturbs a live pgpool nor its pgpool_status file; it is stopped by its PID once
    it has started. pgpool reads every line in order, so a bad value anywhere is still
    reported; only the runtime effect of the replaced settings (e.g. a port already in use)
    is not tested. Refused on the node where pgpool runs.
    Exit 3 with the configuration error when it does not start.
    """
    fmt = output.resolve_format(ctx, format)
    wait = checks.positive("wait", wait, int)
    data = check(ctx, host, wait)
    output.emit(data, fmt, table=lambda d: (["item", "value"],
                                            [[k, v] for k, v in d.items() if k != "output"]))
    if not data["ok"]:
        raise StateError(f"{data['host']}: pgpool -n failed: {data['errors'][0]}")


# --------------------------------------------------------------------------- stop / start


def _crm(ctx, host, cmd):
    return remote.run(ctx, host, cmd, warn=True)


def _set_meta(ctx, host, rid, name, value):
    """Set (value) or delete (value None) the meta attribute NAME of resource RID."""
    if value is not None:
        cmd = (f"crm_resource --resource {shell.q(rid)} --meta --set-parameter {name} "
               f"--parameter-value {shell.q(value)}")
    else:
        cmd = f"crm_resource --resource {shell.q(rid)} --meta --delete-parameter {name}"
    res = _crm(ctx, host, cmd)
    if res.exited != 0 and value is not None:
        raise StateError(f"{host.name}: {cmd} failed: {(res.stderr or res.stdout).strip()}")
    return res


def set_maintenance(ctx, host, rid, on):
    """Resource-level maintenance: Pacemaker neither starts, stops nor monitors RID."""
    return _set_meta(ctx, host, rid, "maintenance", "true" if on else None)


def wait_listening(ctx, host, port, want, timeout):
    deadline = time.monotonic() + timeout
    while True:
        now = listening(ctx, host, port)
        if now == want:
            return now
        if time.monotonic() > deadline:
            word = {True: "listening", False: "not listening"}
            raise HaError(f"{host.name}: expected pgpool {word[want]} on port {port} within "
                          f"{timeout}s; it is {word[now]}", HaError.NOT_CONVERGED)
        time.sleep(LISTEN_POLL)


def stop(ctx, host, mode="fast", timeout=60, reason="pgpool.stop"):
    """Stop pgpool on HOST: record newest, put the resource in maintenance, pgpool -m MODE stop."""
    h, c = db_host(ctx, host)
    port = _port(c, "pgpool_port", 9999)
    rid = c.vars.get("pgpool_resource")
    if not listening(ctx, h, port):
        print(f"{h.name}: pgpool is not listening on {port}; nothing to stop", flush=True)
        return {"host": h.name, "stopped": False}
    if rid:
        rs = resource_state(ctx, c)
        if rs["node"] != h.name:
            # not Pacemaker's copy (it runs elsewhere or nowhere): leave the resource alone
            print(f"{h.name}: pgpool listens here but Pacemaker runs {rid} on "
                  f"{rs['node'] or 'no node'}: stopping this copy only", flush=True)
            rid = None
    rec = newest.record_newest(ctx, c.name, f"{reason} on {h.name}")
    where = rec.get("newest") or (rec.get("previous") or {}).get("newest") or "unknown"
    print(f"{h.name}: pgpool listening on {port}; newest data: {where}", flush=True)
    if rid:
        set_maintenance(ctx, h, rid, True)
    cmd = stop_command(c.vars.get('pgpool_bin') or PGPOOL, _conf(c), mode)
    res = remote.run(ctx, h, cmd, user="postgres", warn=True, timeout=timeout + 30)
    if remote.is_dry(ctx):
        return {"host": h.name, "dry": True}
    if res.exited != 0:
        print(f"{h.name}: pgpool -m {mode} stop: {(res.stderr or res.stdout).strip()}",
              file=sys.stderr, flush=True)
    try:
        wait_listening(ctx, h, port, False, timeout)
    except HaError as exc:
        raise HaError(f"{exc.message}: {listeners(ctx, h, port)}", exc.code) from None
    tail = f"; resource {rid} left in maintenance until pgpool.start --host {h.name}" if rid else ""
    print(f"{h.name}: pgpool stopped{tail}", flush=True)
    return {"host": h.name, "stopped": True, "maintenance": bool(rid)}


def stop_command(pgpool_bin, conf, mode):
    """`pgpool -m MODE stop`, returning as soon as the pgpool process (its pid file's) is gone:
    pgpool's own stop sends the signal, then checks the process once a second, so it always
    took a whole second more. The stop command is ended only once pgpool has exited."""
    return (f"conf={shell.q(conf)}; "
            "pf=$(sed -n \"s/^[[:space:]]*pid_file_name[[:space:]]*=[[:space:]]*'\\(.*\\)'.*/\\1/p\" "
            "\"$conf\" | tail -n 1); pid=$(head -n 1 \"${pf:-/nonexistent}\" 2>/dev/null); "
            # only a pid that is alive before the stop is watched: with a stale pid file the
            # stop command's own answer (its error) is what counts
            "case $pid in ''|*[!0-9]*) pid=;; *) [ -d /proc/$pid ] || pid=;; esac; "
            f"{shell.q(pgpool_bin)} -f \"$conf\" -m {shell.q(mode)} stop & sp=$!; "
            "while kill -0 $sp 2>/dev/null; do "
            "if [ -n \"$pid\" ] && [ ! -d /proc/$pid ]; then "
            "kill $sp 2>/dev/null; wait $sp 2>/dev/null; exit 0; fi; "
            "sleep 0.05; done; wait $sp")


def start(ctx, host, timeout=60):
    """Start pgpool on HOST: hand it back to Pacemaker, or run pgpool when unclustered."""
    h, c = db_host(ctx, host)
    port = _port(c, "pgpool_port", 9999)
    rid = c.vars.get("pgpool_resource")
    if not rid:
        if listening(ctx, h, port):
            print(f"{h.name}: pgpool already listening on {port}", flush=True)
            return {"host": h.name, "started": False}
        remote.run(ctx, h, f"{shell.q(c.vars.get('pgpool_bin') or PGPOOL)} -f {shell.q(_conf(c))}",
                   user="postgres", timeout=timeout)
    else:
        rs = resource_state(ctx, c)
        maint = maintenance_set(ctx, h, rid)
        if not maint:
            if rs["node"] == h.name and listening(ctx, h, port):
                print(f"{h.name}: pgpool already runs here under Pacemaker", flush=True)
                return {"host": h.name, "started": False}
            if rs["node"]:
                raise StateError(f"Pacemaker runs pgpool on {rs['node']}; a second copy on "
                                 f"{h.name} would be 'active on 2 nodes' (move it with hb.standby)")
            raise StateError(f"Pacemaker does not run {rid} (role {rs['role']}); see hb.status "
                             f"and hb.cleanup")
        vip_at = vip_node(ctx, c)
        if vip_at and vip_at != h.name:
            raise StateError(f"the group of {rid} (VIP) is on {vip_at}, not {h.name}: "
                             f"run pgpool.start --host {vip_at}")
        # Leaving maintenance while pgpool is down would make the resumed monitor fail
        # ("not running"). So: target-role Stopped first, then out of maintenance (Pacemaker
        # runs a harmless stop), then target-role removed: Pacemaker starts pgpool itself.
        set_target_stopped(ctx, h, rid, True)
        set_maintenance(ctx, h, rid, False)
        if not remote.is_dry(ctx):
            wait_resource(ctx, c, lambda rs: rs["node"] is None and rs["managed"],
                          "stopped and managed", timeout)
        set_target_stopped(ctx, h, rid, False)
    if remote.is_dry(ctx):
        return {"host": h.name, "dry": True}
    wait_listening(ctx, h, port, True, timeout)
    if rid:
        wait_resource(ctx, c, lambda rs: rs["node"] == h.name and rs["managed"],
                      f"Started on {h.name}", timeout)
    tail = f", {rid} managed by Pacemaker again" if rid else ""
    print(f"{h.name}: pgpool listening on {port}{tail}", flush=True)
    return {"host": h.name, "started": True}


def set_target_stopped(ctx, host, rid, on):
    """target-role=Stopped on RID (on), or no target-role at all (off)."""
    return _set_meta(ctx, host, rid, "target-role", "Stopped" if on else None)


def wait_resource(ctx, c, ok, expected, timeout):
    """Poll crm_mon until ok(resource_state) or NOT_CONVERGED naming what was seen."""
    deadline = time.monotonic() + timeout
    while True:
        rs = resource_state(ctx, c)
        if ok(rs):
            return rs
        if time.monotonic() > deadline:
            raise HaError(f"{rs['id']} not {expected} in crm_mon within {timeout}s (role "
                          f"{rs['role']}, node {rs['node']}, managed {rs['managed']})",
                          HaError.NOT_CONVERGED)
        time.sleep(LISTEN_POLL)


def maintenance_set(ctx, host, rid):
    cmd = f"crm_resource --resource {shell.q(rid)} --meta --get-parameter maintenance"
    res = remote.run(ctx, host, cmd, probe=True, warn=True)
    return res.exited == 0 and res.stdout.strip().splitlines()[-1:] == ["true"]


def vip_node(ctx, c):
    rid = c.vars.get("vip_resource")
    if not rid:
        return None
    for r in crm.crm_status(ctx, c.name).get("resources", []):
        if r.get("id") == rid and r.get("role") == "Started":
            return r.get("node")
    return None


@task(name="stop", help=helps("DB", {"host": "DB host where pgpool runs",
                         "mode": True,
                         "timeout": "seconds to wait (default 60)",
                         "yes": True}))
def stop_task(ctx, host, mode="fast", timeout=60, yes=False):
    """Stop pgpool on a host (pgpool -m MODE stop), after recording the newest-data backend.

    Runbook `pgpool -m smart|fast|immediate stop`. In a Pacemaker cluster (pgpool_resource
    set) the resource is first put in maintenance (crm_resource --meta maintenance=true:
    Pacemaker neither restarts nor monitors it), then pgpool is stopped with the runbook's
    command; the VIP stays. `pgpool.start --host H` hands it back to Pacemaker. Verified:
    nothing listens on pgpool_port any more.
    """
    h, c = db_host(ctx, host)
    checks.mode(mode)
    timeout = checks.positive("timeout", timeout, int)
    with journal.operation(ctx, c.name, "pgpool.stop", {"host": h.name, "mode": mode}, yes=yes):
        return stop(ctx, h.name, mode, timeout)


@task(name="start", help=helps("DB", {"host": "DB host", "timeout": "seconds to wait (default 60)",
                          "yes": True}))
def start_task(ctx, host, timeout=60, yes=False):
    """Start pgpool on a host, verified listening.

    Runbook pgpool start. In a Pacemaker cluster, after pgpool.stop (resource in
    maintenance): target-role Stopped, maintenance removed (Pacemaker sees it stopped, no
    failed monitor), target-role removed, so Pacemaker starts pgpool itself through its
    agent; HOST must be where the group's VIP is. Refused when Pacemaker
    already runs pgpool on the other node. Without pgpool_resource it runs `pgpool -f CONF`.
    """
    h, c = db_host(ctx, host)
    timeout = checks.positive("timeout", timeout, int)
    with journal.operation(ctx, c.name, "pgpool.start", {"host": h.name}, yes=yes):
        return start(ctx, h.name, timeout)


# ------------------------------------------------------------------ pcp: detach / attach / recover


def pcp_command(c, verb, node_id):
    """pcp_VERB -h VIP -p PCP_PORT -U PCP_USER -w -n ID (password from ~/.pcppass)."""
    user = c.vars.get("pcp_user") or c.vars.get("pg_user") or "postgres"
    return (f"pcp_{verb} -h {shell.q(c.vars['vip'])} -p {_port(c, 'pcp_port', 9898)} "
            f"-U {shell.q(user)} -w -n {int(node_id)}")


def run_pcp(ctx, c, verb, node_id, timeout=60):
    """Run a pcp command as postgres on the first DB host that answers."""
    cmd = pcp_command(c, verb, node_id)
    problems = []
    for h in c.hosts:
        try:
            res = remote.run(ctx, h, cmd, user="postgres", warn=True, timeout=timeout)
        except UnreachableError as exc:
            problems.append(exc.message)
            continue
        said = f"{res.stdout or ''}\n{res.stderr or ''}"
        # pgpool-II 4.3's pcp_recovery_node exits 0 even when a recovery stage failed: what it
        # printed is the truth ("ERROR: ..." instead of "... -- Command Successful")
        failed = res.exited != 0 or (
            not remote.is_dry(ctx)
            and ("ERROR" in said or "Command Successful" not in said))
        if failed:
            why = " ".join(ln.strip() for ln in said.splitlines() if ln.strip()) or \
                f"exit {res.exited}"
            raise StateError(f"{h.name}: {cmd.split()[0]} -n {node_id} failed: {why}")
        return res
    raise UnreachableError(f"no DB host to run {cmd.split()[0]} from ({'; '.join(problems)})")


def _backend(data, node_id):
    for b in data.get("backends", []):
        if str(b.get("node_id")) == str(node_id):
            return b
    raise StateError(f"pgpool has no backend {node_id} (backends: "
                     f"{', '.join(str(b.get('node_id')) for b in data.get('backends', []))})")


def wait_backend(ctx, c, node_id, want, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = backends.read_pool_nodes(ctx, c.name)
        except HaError:
            # right after an attach or a recovery pgpool restarts its children and may drop
            # the first connection: ask again until the deadline
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL_INTERVAL)
            continue
        b = _backend(data, node_id)
        if b.get("status") == want:
            return data
        if time.monotonic() > deadline:
            raise HaError(f"pgpool backend {node_id} ({b.get('host')}) expected {want} within "
                          f"{timeout}s, still {b.get('status')}", HaError.NOT_CONVERGED)
        time.sleep(POLL_INTERVAL)


def print_nodes(label, data):
    text = ", ".join(f"{b.get('node_id')}:{b.get('host')} {b.get('status')}"
                     for b in data["backends"])
    print(f"{label}: {text}; degenerated: {'yes' if data.get('degenerated') else 'no'}", flush=True)


def detach(ctx, host, node_id, timeout=30, reason="pgpool.switch", position=True):
    """pcp_detach_node for NODE_ID (refuses the last up backend); records newest; verified."""
    c = backends.pgpool_cluster(ctx, host.cluster)
    before = backends.check_node_ids(c, backends.read_pool_nodes(ctx, c.name))
    print_nodes("before", before)
    b = _backend(before, node_id)
    if b.get("status") != "up":
        print(f"backend {node_id} ({host.name}) is already detached", flush=True)
        newest.record_newest(ctx, c.name, f"{reason}: {host.name} already detached")
        return before
    others = [x for x in backends.up(before) if str(x.get("node_id")) != str(node_id)]
    if not others:
        raise HaError(f"refusing to detach {host.name} (node {node_id}): it is the last backend up",
                      HaError.REFUSED)
    run_pcp(ctx, c, "detach_node", node_id, timeout)
    if remote.is_dry(ctx):
        return before
    after = wait_backend(ctx, c, node_id, "down", timeout)
    print_nodes("after", after)
    if not after.get("degenerated"):
        raise HaError("pgpool does not report degenerated after the detach", HaError.NOT_CONVERGED)
    newest.record_newest(ctx, c.name, f"{reason}: detached {host.name} (node {node_id})")
    # its write position as it leaves replication: a later rebuild proves it clean from this
    # (not when the caller rebuilds it at once: POSITION False)
    if position:
        divergence.record_left(ctx, c.name, host, f"{reason}: detached from pgpool")
    return after


def attach_guard(ctx, c, host, before, force):
    """Before attaching HOST: its contents must equal those of a backend pgpool has up (row
    counts and checksums of every table). Different, or not comparable: refused (REFUSED)
    unless FORCE. Returns {"equal": bool, "with": host name or None, "why"}."""
    mains = [b.get("host") for b in backends.up(before)
             if b.get("host") not in (host.name, host.address)]
    if not mains:
        return {"equal": True, "with": None, "why": "no other backend is up"}
    main = next((h for h in c.hosts if h.name in mains or h.address in mains), None)
    if main is None:
        raise StateError(f"pgpool's backend {mains[0]} is not an inventory host")
    try:
        cmp = divergence.compare_digests(ctx, {main.name: divergence.port_of(main),
                                               host.name: divergence.port_of(host)})
        equal = cmp["equal"]
        why = ("contents equal" if equal else
               f"contents differ from {main.name}'s in {len(cmp['differences'])} table(s), first "
               f"{cmp['differences'][0]['database']}.{cmp['differences'][0]['table']} "
               f"{cmp['differences'][0].get('counts')}")
    except HaError as exc:
        equal, why = False, f"cannot compare with {main.name}: {exc.message}"
    if not equal and not force:
        raise HaError(f"refusing to attach {host.name}: {why}; it missed writes made while it "
                      f"was detached. Rebuild it: pgpool.recover --node {host.name} (or "
                      f"sync.resync); --force attaches it anyway, journaled as attached without "
                      f"resync (stale-attach) until a resync or sync.verify proves it equal",
                      HaError.REFUSED)
    return {"equal": equal, "with": main.name, "why": why}


def attach(ctx, host, node_id, timeout=30, force=False, proven=False):
    """pcp_attach_node for NODE_ID, verified up. Refused when its contents differ from the
    main backend's (attach_guard) unless FORCE; PROVEN: the caller has just verified the
    contents equal (a resync)."""
    c = backends.pgpool_cluster(ctx, host.cluster)
    before = backends.check_node_ids(c, backends.read_pool_nodes(ctx, c.name))
    print_nodes("before", before)
    if _backend(before, node_id).get("status") == "up":
        print(f"backend {node_id} ({host.name}) is already attached", flush=True)
        return before
    guard = {"equal": True, "why": "verified by the caller"} if proven else \
        attach_guard(ctx, c, host, before, force)
    run_pcp(ctx, c, "attach_node", node_id, timeout)
    if remote.is_dry(ctx):
        return before
    after = wait_backend(ctx, c, node_id, "up", timeout)
    print_nodes("after", after)
    if guard["equal"]:
        print(f"{host.name}: {guard['why']}", flush=True)
        journal.Journal(ctx).write("equal", c.name, "equal", {"host": host.name},
                                   backends=[h.name for h in c.hosts], proof=guard["why"])
    else:
        journal.Journal(ctx).write("stale_attach", c.name, "stale_attach", {"host": host.name},
                                   backend=host.name, why=guard["why"])
        print(f"warning: {host.name} attached WITHOUT resync (--force): {guard['why']}; "
              f"journaled as stale-attach; reads through pgpool may return its old data. "
              f"Rebuild it: pgpool.recover --node {host.name}", file=sys.stderr, flush=True)
    return after


def recover(ctx, host, node_id, timeout=300, force=False):
    """Online recovery of NODE_ID from the main backend (pcp_recovery_node), then compare.
    First proves HOST holds no write the main backend lacks (salvage.prove_clean)."""
    c = backends.pgpool_cluster(ctx, host.cluster)
    before = backends.check_node_ids(c, backends.read_pool_nodes(ctx, c.name))
    others = [x for x in backends.up(before) if str(x.get("node_id")) != str(node_id)]
    if not others:
        raise HaError("no backend is up to recover from", HaError.REFUSED)
    src = next(h for h in c.hosts if str(h.pgpool_node_id) == str(others[0].get("node_id")))
    salvage.prove_clean(ctx, c.name, host, src, force, what=f"pgpool.recover of {host.name}")
    if _backend(before, node_id).get("status") == "up":
        print(f"{host.name} is attached: detaching it first (online recovery rebuilds it)",
              flush=True)
        detach(ctx, host, node_id, min(timeout, 60), reason="pgpool.recover", position=False)
    else:
        print_nodes("before", before)
    run_pcp(ctx, c, "recovery_node", node_id, timeout)
    if remote.is_dry(ctx):
        return before
    after = wait_backend(ctx, c, node_id, "up", 60)
    print_nodes("after", after)
    cmp = compare.row_count_report(ctx, c.name)
    if not cmp["equal"]:
        d = cmp["differences"][0]
        raise HaError(f"recovered {host.name}, but row counts differ: {d['database']}.{d['table']} "
                      f"{d['counts']}", HaError.NOT_CONVERGED)
    print(f"row counts equal on {', '.join(cmp['hosts'])} ({len(cmp['tables'])} tables)",
          flush=True)
    newest.record_newest(ctx, c.name, f"pgpool.recover: {host.name} rebuilt, row counts equal")
    return after


def _node_args(node, side):
    return {k: v for k, v in (("node", node), ("side", side)) if v is not None}


@task(name="switch", aliases=["detach"],
      help=helps("DB", {"node": "host name or pgpool node id to detach",
            "side": "master (backend 0) or secondary (backend 1)",
            "timeout": "seconds to wait (default 30)",
            "yes": True}))
def switch_task(ctx, node=None, side=None, timeout=30, yes=False):
    """Detach a backend from pgpool (degenerate), record the newest-data backend.

    Runbook 5.2.1 `pgpool -s master|secondary switch` (the side named is the one stopped),
    now `pcp_detach_node -n ID`. Refuses to detach the last backend up. Verified:
    SHOW pool_nodes shows it down and pgpool degenerated. A resync is needed afterwards.
    """
    h, node_id = resolve_node(ctx, node, side)
    timeout = checks.positive("timeout", timeout, int)
    with journal.operation(ctx, h.cluster, "pgpool.switch", _node_args(node, side), yes=yes):
        detach(ctx, h, node_id, timeout)


@task(name="attach", help=helps("DB", {"node": "host name or pgpool node id",
                           "timeout": "seconds to wait (default 30)",
                           "force": "attach even when its contents differ (journaled stale-attach)",
                           "yes": True}))
def attach_task(ctx, node, timeout=30, force=False, yes=False):
    """Attach a detached backend to pgpool again (pcp_attach_node), verified up.

    Data written while it was detached is NOT copied: use pgpool.recover for that. Refused
    (exit 7) when its row counts and checksums differ from the backend pgpool has up; --force
    attaches it anyway and journals it as attached without resync (stale-attach).
    """
    h, node_id = resolve_node(ctx, node)
    timeout = checks.positive("timeout", timeout, int)
    args = {"node": node, **({"force": True} if force else {})}
    with journal.operation(ctx, h.cluster, "pgpool.attach", args, yes=yes):
        attach(ctx, h, node_id, timeout, force=bool(force))


@task(name="recover", help=helps("DB", {"node": "host name or pgpool node id to rebuild",
                            "timeout": "seconds for pcp_recovery_node (default 300)",
                            "force": "rebuild even when it holds writes the main backend lacks "
                                     "(they are kept in a salvage file)",
                            "yes": True}))
def recover_task(ctx, node, timeout=300, force=False, yes=False):
    """Rebuild a backend from the main one by online recovery (pcp_recovery_node), verified.

    New since 2008 (replaces the dump/restore resync when the cluster allows it). If the
    backend is attached it is detached first. Verified: the backend is up again and the
    row counts of every table are equal on all backends (pg.compare). First proven from both
    backends: the node holds no write the main one lacks; otherwise refused (exit 3) with a
    salvage file of its writes, unless --force.
    """
    h, node_id = resolve_node(ctx, node)
    timeout = checks.positive("timeout", timeout, int)
    args = {"node": node, **({"force": True} if force else {})}
    with journal.operation(ctx, h.cluster, "pgpool.recover", args, yes=yes):
        recover(ctx, h, node_id, timeout, force=bool(force))


def write_status_file(ctx, c, host_name, words):
    """Write WORDS ("up"/"down", in node-id order) into HOST's pgpool_status file, which pgpool
    reads at start for each backend's status: only when pgpool is not running there (a live
    pgpool keeps its own). True when written."""
    conf = c.vars.get("pgpool_conf") or "/etc/pgpool2/pgpool.conf"
    port = backends.pgpool_port(c)
    script = (f"conf={shell.q(conf)}; "
              "d=$(sed -n \"s/^[[:space:]]*logdir[[:space:]]*=[[:space:]]*'\\(.*\\)'.*/\\1/p\" "
              "\"$conf\" | tail -n 1); [ -n \"$d\" ] || d=/tmp; "
              f"if ss -Hltn {shell.q(f'sport = :{port}')} | grep -q .; then echo running; "
              f"else printf '%s\\n' {' '.join(shell.q(w) for w in words)} > \"$d/pgpool_status\" "
              "&& echo \"written $d/pgpool_status\"; fi")
    res = remote.run(ctx, remote.host(ctx, host_name), script, user="postgres", warn=True)
    return res is not None and res.exited == 0 and "written" in (res.stdout or "")
