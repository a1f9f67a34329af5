"""Reading Pacemaker over ssh: crm_mon from the first node that answers, waits, the DC.

One way to read a cluster's state, so that every task and scenario sees the same facts and
fails the same way when no node answers. The reads run under --dry; ``run_action`` is the one
way a mutating crm command runs (printed under --dry, a non-zero exit is a StateError). What
the parsed state means is ``hatasks.crmmon``.
"""

import threading
import time

from hatasks import crmmon, remote, shell
from hatasks.errors import HaError, StateError, UnreachableError

#: the one read-only view of a cluster every step uses
CRM_MON = "crm_mon -1 --output-as=xml"
#: seconds one crm_mon read may take (it answers in a second or two, more on a loaded node)
CRM_MON_TIMEOUT = 30
#: how often a wait re-reads crm_mon (seconds)
POLL_INTERVAL = 0.1


def first_line(text):
    """The first non-blank line of TEXT, stripped ("" when none)."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def crm_status(ctx, cluster, prefer=None, only=None):
    """Read crm_mon from the first node of CLUSTER that answers (read-only, runs under --dry).

    prefer: host names to try first; only: restrict to these host names (e.g. a peer's view).
    Returns crmmon.parse_crm_mon_xml's dict plus "cluster", "read_on" (the host it was read
    from) and "unanswered" ({host: reason} for hosts tried before it).
    """
    inv = remote.inventory(ctx)
    hosts = list(inv.cluster(cluster).hosts)
    if only is not None:
        hosts = [h for h in hosts if h.name in only]
    if prefer:
        order = {name: i for i, name in enumerate(prefer)}
        hosts.sort(key=lambda h: order.get(h.name, len(order)))
    problems, unreachable = {}, set()
    for host in hosts:
        try:
            # crm_mon answers in a second or two; a node cut off mid-read must not hold the poll
            res = remote.run(ctx, host, CRM_MON, probe=True, warn=True, timeout=CRM_MON_TIMEOUT)
        except UnreachableError as exc:
            problems[host.name] = exc.message
            unreachable.add(host.name)
            continue
        out = res.stdout or ""
        if "<pacemaker-result" not in out:
            why = first_line(res.stderr) or first_line(out) or f"exit {res.exited}"
            problems[host.name] = f"crm_mon failed: {why}"
            continue
        try:  # a stopped stack answers with <status code="102" message="Not connected">
            state = crmmon.parse_crm_mon_xml(out)
        except ValueError as exc:
            problems[host.name] = str(exc)
            continue
        state = dict(state)
        state["cluster"] = cluster
        state["read_on"] = host.name
        state["unanswered"] = problems
        return state
    names = "; ".join(f"{n}: {why}" for n, why in problems.items()) or "no host"
    if hosts and len(unreachable) == len(hosts):
        raise UnreachableError(f"cluster {cluster}: no node answered ({names})")
    raise StateError(f"cluster {cluster}: no node gave a crm_mon status ({names})")


def summary(state):
    """One readable paragraph of a cluster's state (printed before and after every action)."""
    lines = []
    nodes = ", ".join(f"{n['name']} {n['state'].upper() if n['state'] == 'offline' else n['state']}"
                      for n in state.get("nodes", []))
    lines.append(f"cluster {state.get('cluster')} (read on {state.get('read_on')}): {nodes}")
    flags = [f"node {n['name']} in maintenance" for n in state.get("nodes", [])
             if n.get("maintenance")]
    if state.get("maintenance_mode"):
        flags.insert(0, "cluster maintenance-mode ON")
    if state.get("stop_all_resources"):
        flags.append("stop-all-resources ON")
    if state.get("quorum") is False:
        flags.append("NO QUORUM")
    if flags:
        lines.append("  !! " + "; ".join(flags))
    groups = {}
    for res in state.get("resources", []):
        groups.setdefault(res.get("group") or res.get("id"), []).append(res)
    for name, members in groups.items():
        where = sorted({(f"{r.get('role')} {r.get('node') or ''}".strip()
                         + (" (unmanaged)" if not r.get("managed", True) else "")
                         + (" (BLOCKED)" if r.get("blocked") else "")
                         + (" (disabled)" if crmmon.disabled(r) else "")) for r in members})
        lines.append(f"  {name}: {'; '.join(where)}")
    for f in state.get("failed_actions", []):
        lines.append(f"  FAILED {f.get('resource')} {f.get('operation')} on {f.get('node')}: "
                     f"rc={f.get('rc')} {f.get('reason') or ''}".rstrip())
    for name, why in (state.get("unanswered") or {}).items():
        lines.append(f"  ({name} did not answer: {why})")
    return "\n".join(lines)


def read_constraints(ctx, host):
    """The move/ban constraints left in the CIB, read on HOST (crmmon.cli_constraints);
    None when the CIB cannot be read there."""
    res = remote.run(ctx, host, "cibadmin --query --scope constraints", probe=True, warn=True,
                     timeout=30)
    if res.exited != 0:
        return None
    try:
        return crmmon.cli_constraints(res.stdout)
    except ValueError:
        return None


def dc_idle(ctx, state, timeout=None):
    """True when the cluster's DC controller is idle (no transition pending or running), asked
    on the node STATE was read on (``crmadmin -S DC`` says ``... in state S_IDLE: ok`` on
    stdout). TIMEOUT: seconds for crmadmin (UnreachableError past it)."""
    dc = state.get("dc")
    if not dc:
        return False
    res = remote.run(ctx, remote.host(ctx, state["read_on"]), f"crmadmin -S {shell.q(dc)}",
                     probe=True, warn=True, timeout=timeout)
    return res.exited == 0 and "S_IDLE" in (res.stdout or "")


def _dc_idle_meanwhile(ctx, state):
    """Ask STATE's DC whether it is idle in a thread (while crm_mon is read again): a callable
    giving True/False (False when the question failed)."""
    box = {}

    def ask():
        try:
            box["idle"] = dc_idle(ctx, state)
        except HaError:
            box["idle"] = False

    t = threading.Thread(target=ask, daemon=True)
    t.start()

    def answer():
        t.join()
        return box.get("idle", False)

    return answer


def wait_for(ctx, cluster, check, timeout, expected, prefer=None, only=None, settle=False,
             seen=None, give_up=None):
    """Poll crm_mon until check(state) is true; NOT_CONVERGED naming what was seen otherwise.

    GIVE_UP(state or None): after a poll that did not converge, an error to raise at once when
    what is awaited can no longer come by itself (None to go on waiting).

    settle=True: also wait until the DC is idle, seen on two polls in a row with check(state)
    true (a failback or a re-probe that the scheduler has still to run would not be idle).
    SEEN: the state the caller read last (its DC is asked on the first poll already).
    """
    deadline = time.monotonic() + timeout
    last, last_error, settled = seen, None, 0
    while True:
        # settle: once a read has met the check, the DC it named is asked at the same time as
        # crm_mon is read again (one round trip per poll instead of two); its answer counts only
        # when the new read names the same DC on the same node. So is the first poll's, asked
        # of the DC the caller SEEN (right after an action, the first read often meets the
        # check already). Otherwise no question is sent that the poll would throw away.
        idle = (_dc_idle_meanwhile(ctx, last)
                if settle and last is not None and last.get("dc")
                and (last is seen or check(last)) else None)
        try:
            prev = last
            last = crm_status(ctx, cluster, prefer=prefer, only=only)
            last_error = None
            if check(last):
                if not settle:
                    return last
                if idle is not None and (prev.get("dc"), prev.get("read_on")) == (
                        last.get("dc"), last.get("read_on")):
                    now_idle = idle()
                else:
                    now_idle = dc_idle(ctx, last)
                settled = settled + 1 if now_idle else 0
                if settled >= 2:
                    return last
            else:
                settled = 0
        except HaError as exc:
            last_error = exc
        if give_up is not None:
            hopeless = give_up(last if last_error is None else None)
            if hopeless is not None:
                raise hopeless
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    if last is seen:
        last = None
    if last_error is not None and last is None:
        seen = last_error.message
    else:
        seen = summary(last).replace("\n", ";") if last else "nothing"
        if last_error is not None:
            seen += f"; last read failed: {last_error.message}"
        elif settle and last is not None and check(last):
            seen += f"; the DC ({last.get('dc')}) never settled (transition still running)"
    raise HaError(f"not converged after {timeout:g}s: expected {expected}; saw {seen}",
                  HaError.NOT_CONVERGED)


def host_gone(ctx, host, polls=2, awaited="its stack"):
    """A give_up for wait_for when HOST itself must be seen (its own crm_mon, or a resource
    coming to it): once HOST has not answered ssh on POLLS polls in a row (powered off, fenced,
    cut off), waiting longer cannot show it, so the wait ends with UnreachableError naming it
    and what was AWAITED."""
    missed = []

    def give_up(state):
        if state is not None and state.get("read_on") == host.name:
            missed.clear()
            return None
        try:
            remote.run(ctx, host, "true", probe=True, timeout=10)
            missed.clear()
            return None
        except UnreachableError as exc:
            missed.append(exc.message)
        if len(missed) < polls:
            return None
        return UnreachableError(f"{host.name} stopped answering while {awaited} was awaited "
                                f"(powered off, fenced or cut off?): {missed[-1]}")
    return give_up


def run_action(ctx, host, command, timeout=60):
    """Run a mutating command (printed only under --dry); fail on a non-zero exit."""
    res = remote.run(ctx, host, command, warn=True, timeout=timeout)
    if remote.is_dry(ctx) or res is None:
        return res
    if res.exited != 0:
        why = first_line(res.stderr) or first_line(res.stdout) or f"exit {res.exited}"
        raise StateError(f"{getattr(host, 'name', host)}: `{command}` failed: {why}")
    return res
