"""The scenario engine shared by the DB and LB scenarios (db.py, lb.py).

A scenario reads the cluster (facts), lets the pure rules (rules.py) name the failure and plan
its recovery, and runs the plan: `run_recovery` is the diagnose -> plan -> act -> re-diagnose
loop. Plan steps are data (rules.step); each scenario declares a step table, {task name:
function(run, args)}, and `execute` runs one step through it. Here too: reading the facts both
scenarios need (crm_mon per node, power, the CIB's failback policy), the settle wait, the
before/after printing and the one output of both `diagnose` tasks.
"""

import dataclasses
import re
import shlex
import subprocess
import threading
import time

from hatasks import backends, checks, crm, crmmon, hb, journal, output, remote, rules
from hatasks.errors import HaError, StateError

#: how many plan steps db.recover / lb.recover run at most before giving up
MAX_STEPS = 12


class NeedsHuman(HaError):
    """A step only a human can do (power, network, a configuration edit): exit 3."""

    def __init__(self, message):
        super().__init__(f"needs a human: {message}", HaError.STATE)


# =========================================================================== the cluster to act on


def move_inputs(ctx, kind, cluster, node, option, timeout):
    """The inputs every manual move checks before anything runs: the cluster of KIND, NODE
    (``--from``/``--to``) as one of its hosts when given, a positive timeout. Returns
    (cluster, timeout, group)."""
    c = checks.cluster(ctx, cluster or None, kind)
    if node is not None:
        checks.host(ctx, node, option, cluster=c)
    return c, checks.positive("timeout", timeout), c.vars.get("group")


def warm_connections(ctx, c):
    """Open the ssh connections to every host of cluster C in the background (a move talks to
    both nodes; the first command to a host then does not pay the connect). Errors are left
    to the command that needs the host."""
    def connect(name):
        try:
            remote.connection(ctx, remote.host(ctx, name))
        except Exception:  # noqa: BLE001 - the real command reports it
            pass

    for name in c.host_names:
        threading.Thread(target=connect, args=(name,), daemon=True).start()


def in_background(fn, *args):
    """Start FN(*ARGS) in a thread; return a callable that waits for it and gives its result
    (or raises its error; one never awaited is dropped). Used to overlap a read or a record
    with reading the state."""
    box = {}

    def work():
        try:
            box["value"] = fn(*args)
        except Exception as exc:  # noqa: BLE001 - raised where the result is awaited
            box["err"] = exc

    t = threading.Thread(target=work, daemon=True)
    t.start()

    def result():
        t.join()
        if "err" in box:
            raise box["err"]
        return box.get("value")

    return result


class EarlyLock:
    """Take CLUSTER's operation lock in a thread while the state is read (the lock's round
    trips overlap the connection set-up and the reads instead of following them). The
    operation that mutates still enters journal.operation, which finds the lock held by this
    process (re-entrant) or, when this early take failed, takes it itself and reports why.
    ``release()`` gives back this take's hold (once, after the operation)."""

    def __init__(self, ctx, cluster, action):
        self.ctx, self.cluster = ctx, cluster
        self._taken = None
        if remote.is_dry(ctx):
            return

        def take():
            try:
                journal.acquire(ctx, cluster, action)
                return True
            except Exception:  # noqa: BLE001 - the operation's own acquire reports it
                return False

        self._taken = in_background(take)

    def release(self):
        taken, self._taken = self._taken, None
        if taken is not None and taken():
            journal.release(self.ctx, self.cluster)


# =========================================================================== facts (read-only)


def power_state(ctx, host):
    """'on' / 'off' from the inventory's power_check command (run here), None if unknown."""
    spec = (host.vars or {}).get("power_check")
    if not spec:
        return None
    argv = shlex.split(spec.replace("{host}", host.name))
    if argv and "/" in argv[0] and not argv[0].startswith("/"):
        argv[0] = remote.inventory(ctx).resolve_path(argv[0])
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {0: "on", 1: "off"}.get(proc.returncode)


def crm_error(stdout, stderr, rc):
    """Pure: the reason crm_mon gave for failing (its XML <error> lines or status message)."""
    errors = re.findall(r"<error>([^<]*)</error>", stdout or "")
    if errors:
        return errors[-1].strip()
    m = re.search(r'<status code="(\d+)" message="([^"]*)"', stdout or "")
    if m:
        return f"{m.group(2)} (code {m.group(1)})"
    lines = (stderr or stdout or "").strip().splitlines()
    return lines[-1] if lines else f"crm_mon exited {rc}"


def probe_crm(ctx, host, group):
    """crm_mon on HOST itself: (view or None, error or None). UnreachableError if ssh fails.

    Unlike crm.crm_status (the first node of a cluster that answers, an error when none does),
    a diagnosis needs every node's own view and the reason a node's crm_mon fails."""
    res = remote.run(ctx, host, crm.CRM_MON, probe=True, warn=True, timeout=30)
    text = res.stdout or ""
    if res.exited != 0 or "<pacemaker-result" not in text:
        return None, crm_error(text, res.stderr, res.exited)
    try:
        state = crmmon.parse_crm_mon_xml(text)
    except Exception as exc:  # half-started stack
        return None, f"crm_mon output not understood: {exc}"
    if not state.get("nodes"):
        return None, "crm_mon shows no node (stack starting or stopping)"
    return rules.crm_view(state, group), None


def read_policy(ctx, c, host):
    """The group's failback policy from the CIB read on HOST (rules.parse_policy)."""
    res_c = remote.run(ctx, host, "cibadmin --query --scope constraints", probe=True, warn=True)
    res_d = remote.run(ctx, host, "cibadmin --query --scope rsc_defaults", probe=True, warn=True)
    return rules.parse_policy(res_c.stdout if res_c.exited == 0 else "",
                              res_d.stdout if res_d.exited == 0 else "", c.vars.get("group"))


# =========================================================================== state and output


def print_state(label, state):
    """The cluster's state before / after a scenario acts."""
    print(f"--- {label}")
    print(crm.summary(state), flush=True)


class Steps:
    """The labelled steps of a scenario, each printed as it begins with the time since the
    scenario began: ``[2/4 +0.31s] standby db01: grp-pgpool moves to db02``."""

    def __init__(self, total, prefix="", t0=None):
        self.total = total
        self.n = 0
        self.prefix = prefix
        self.t0 = time.monotonic() if t0 is None else t0

    def elapsed(self):
        return time.monotonic() - self.t0

    def __call__(self, label):
        self.n += 1
        print(f"[{self.prefix}{self.n}/{self.total} +{self.elapsed():.2f}s] {label}", flush=True)

    def sub(self, total):
        """The steps within the current one (``[1.2/4 +0.31s] ...``), on the same clock."""
        return Steps(total, f"{self.prefix}{self.n}.", self.t0)

    def done(self, label):
        print(f"[done +{self.elapsed():.2f}s] {label}", flush=True)


def _where(state, group):
    if state is None:
        return "?"
    return crmmon.group_node(state, group) or "not started"


def _backend_rows(pool_before, pool_after):
    """(what, before, after) rows of pgpool's backends: each one's status and role, "?" where
    a side has no such backend (or no pgpool answer: None)."""
    def by_id(pool):
        return {str(b.get("node_id")): (b.get("host"), b.get("status"), b.get("role"))
                for b in (pool or {}).get("backends") or []}

    def shown(backend):
        return " ".join(x for x in (backend or ("", "?"))[1:] if x) or "?"

    old, new = by_id(pool_before), by_id(pool_after)
    return [(f"pgpool backend {nid} ({(old.get(nid) or new.get(nid))[0]})",
             shown(old.get(nid)), shown(new.get(nid)))
            for nid in sorted(set(old) | set(new), key=lambda x: (len(x), x))]


def _changes_table(rows):
    """The before/after table of (what, before, after) ``rows``, each change marked."""
    return output.tabulate([[what, old, new, "changed" if old != new else ""]
                            for what, old, new in rows],
                           headers=["", "before", "after", ""])


def before_after(before, after, pool_before=None, pool_after=None, pools=False):
    """The table printed when a scenario ends: each node's state, where each group runs and
    (POOLS) each of pgpool's backends, before and after, changes marked; then what the after
    state flags (maintenance, failed actions, a node that did not answer)."""
    def node(state, name):
        n = crmmon.find_node(state or {}, name)
        return (n["state"] + (" maintenance" if n.get("maintenance") else "")) if n else "?"

    names = [n["name"] for n in (before or {}).get("nodes", [])]
    names += [n["name"] for n in (after or {}).get("nodes", []) if n["name"] not in names]
    rows = [(f"node {name}", node(before, name), node(after, name)) for name in names]
    groups = []
    for st in (before, after):
        for r in (st or {}).get("resources", []):
            g = r.get("group") or r.get("id")
            if g not in groups:
                groups.append(g)
    rows += [(f"{g} on", _where(before, g), _where(after, g)) for g in groups]
    if pools:
        rows += _backend_rows(pool_before, pool_after)
        def degenerated(pool):
            return "?" if pool is None else "yes" if pool.get("degenerated") else "no"

        rows.append(("pgpool degenerated", degenerated(pool_before), degenerated(pool_after)))
    text = _changes_table(rows)
    flags = [line for line in crm.summary(after).splitlines()[1:]
             if line.lstrip().startswith(("!!", "FAILED", "("))] if after else []
    return "\n".join([text] + flags)


def recovery_table(first, last):
    """A recovery's closing table from its first and last diagnosis: the pattern, each node
    (as the first node that answered saw it), where the group runs, pgpool's backends."""
    def view(d):
        hosts = ((d or {}).get("facts") or {}).get("hosts") or {}
        return next((h["crm"] for h in hosts.values() if h.get("crm")), None) or {}

    rows = [("pattern", first.get("pattern"), last.get("pattern"))]
    old, new = view(first), view(last)
    for name in list(old.get("nodes") or {}) + [n for n in new.get("nodes") or {}
                                                 if n not in (old.get("nodes") or {})]:
        rows.append((f"node {name}", (old.get("nodes") or {}).get(name, "?"),
                     (new.get("nodes") or {}).get(name, "?")))
    group = ((first.get("facts") or {}).get("group")) or "group"
    rows.append((f"{group} on", old.get("group_node") or "not started" if old else "?",
                 new.get("group_node") or "not started" if new else "?"))
    p_old = (first.get("facts") or {}).get("pgpool")
    p_new = (last.get("facts") or {}).get("pgpool")
    if p_old is not None or p_new is not None:
        rows += _backend_rows(p_old if (p_old or {}).get("reachable") else None,
                              p_new if (p_new or {}).get("reachable") else None)
        rows.append(("pgpool answers", "yes" if (p_old or {}).get("reachable") else "no",
                     "yes" if (p_new or {}).get("reachable") else "no"))
    return _changes_table(rows)


def print_before_after(before, after, pool_before=None, pool_after=None, pools=False):
    """``--- after`` and the before/after table (see before_after)."""
    print("--- after (before -> after)")
    print(before_after(before, after, pool_before, pool_after, pools), flush=True)


def online_others(state, node):
    """The nodes other than NODE that are online (where a group can move to)."""
    return [n["name"] for n in state.get("nodes", [])
            if n["name"] != node and n["state"] == "online"]


def diagnosis_table(d):
    """A diagnosis for the operator: pattern, evidence, numbered recovery plan."""
    lines = [f"== {d['cluster']} cluster: {d['pattern'].upper()}"
             + (f" ({d['host']})" if d.get("host") else "")]
    lines.append("evidence:")
    lines += [f"  - {e}" for e in d["evidence"]]
    if d["pattern"] == "in-progress":
        lines.append("recovery plan: held back until the operation ends (run diagnose again)")
    else:
        lines.append("recovery plan:" if d["plan"] else "recovery plan: nothing to do")
    lines += [f"  {i}. {p}" for i, p in enumerate(d["plan"], 1)]
    lines += [f"what clients will feel: {x}" for x in d.get("impact") or []]
    return "\n".join(lines)


def show_diagnosis(d, fmt, facts, recover):
    """Print diagnosis D (the collected facts only when FACTS); StateError (exit 3) when it
    names a failure, pointing at the RECOVER task."""
    shown = {k: v for k, v in d.items() if k != "steps"}
    if not facts:
        shown.pop("facts", None)
    output.emit(shown, fmt, table=diagnosis_table)
    if d["pattern"] == "in-progress":
        raise StateError(f"{d['cluster']} cluster: {d['evidence'][0]}")
    if d["pattern"] != "healthy":
        raise StateError(f"{d['cluster']} cluster: {d['pattern']} failure"
                         + (f" of {d['host']}" if d.get("host") else "")
                         + f"; recovery: inv {recover} (plan above)")
    return d


# =========================================================================== settle wait


def cluster_idle(ctx, c):
    """True when the cluster's DC reports S_IDLE (no transition running) and the group is
    started on one node (read-only)."""
    try:
        state = crm.crm_status(ctx, c.name)
        return (crmmon.group_node(state, c.vars.get("group")) is not None
                and crm.dc_idle(ctx, state, timeout=30))
    except HaError:
        return False


def wait_settled(ctx, c, timeout, need_pgpool=True):
    """Wait until the cluster is idle (no transition: e.g. a merge recovering resources
    'active on 2 nodes'), twice in a row a second apart, and pgpool answers."""
    deadline = time.monotonic() + timeout
    streak = 0
    while True:
        ok = cluster_idle(ctx, c)
        if ok and need_pgpool:
            try:
                backends.read_pool_nodes(ctx, c.name)
            except HaError:
                ok = False
        streak = streak + 1 if ok else 0
        if streak >= 2:
            return
        if time.monotonic() > deadline:
            raise HaError(f"{c.name} cluster not settled after {timeout:g}s (a transition runs, "
                          f"the group is not started or pgpool does not answer): see hb.status",
                          HaError.NOT_CONVERGED)
        time.sleep(1)


# =========================================================================== running plan steps


@dataclasses.dataclass
class Run:
    """What a recovery's steps run with: the cluster, the timeout of each verification and,
    after a split brain, the source the operator chose (db.recover --source)."""
    ctx: object
    cluster: object
    timeout: float
    source: str = None


def execute(run, plan_step, table):
    """Run PLAN_STEP with the function TABLE maps its task name to."""
    fn = table.get(plan_step["task"])
    if fn is None:
        raise StateError(f"unknown plan step {plan_step['task']}")
    # "hidden": facts the step function needs that are not options of the task's command line
    fn(run, dict(plan_step.get("args") or {}, **(plan_step.get("hidden") or {})))


def start_stack(run, args):
    """hb.start: the cluster stack on a host, waited for online."""
    hb.start(run.ctx, args["host"], timeout=max(run.timeout, 120), yes=True)


def online_node(run, args):
    """hb.online: standby off for a node."""
    hb.online(run.ctx, args["node"], timeout=run.timeout, yes=True)


def cleanup(run, args):
    """hb.cleanup: clear a resource's failed action on a node."""
    hb.cleanup(run.ctx, args["resource"], args["node"], timeout=run.timeout, yes=True)


def step_key(plan_step):
    return (plan_step["task"], tuple(sorted((plan_step.get("args") or {}).items())))


def _todo(d):
    return [s for s in d["steps"] if not s.get("conditional")]


def settled(d, diagnose_fn):
    """While the first step is a manual one marked "settle", diagnose again for that long
    (the state may be a transient one, e.g. a node joining); return the last diagnosis."""
    todo = _todo(d)
    if not todo or todo[0]["task"] != "manual" or not todo[0].get("settle"):
        return d
    deadline = time.monotonic() + todo[0]["settle"]
    print(f"waiting up to {todo[0]['settle']}s: the nodes may still be joining", flush=True)
    while time.monotonic() < deadline:
        time.sleep(2)
        d = diagnose_fn()
        todo = _todo(d)
        if not todo or todo[0]["task"] != "manual" or not todo[0].get("settle"):
            return d
    return d


def run_recovery(ctx, c, action, diagnose_fn, execute_fn, args, yes, max_steps=MAX_STEPS):
    """The recover loop of db.recover and lb.recover: diagnose, show the plan, confirm once,
    then run the first step of a fresh plan until healthy. Stops at a step that needs a
    human (exit 3). NOT_CONVERGED when a step comes up twice in a row."""
    t0 = time.monotonic()
    first = settled(diagnose_fn(), diagnose_fn)
    print(diagnosis_table(first), flush=True)
    todo = _todo(first)
    if first["pattern"] == "healthy" and not todo:
        print(f"{c.name} cluster is healthy: nothing to recover")
        return first
    if todo and todo[0]["task"] == "manual":
        raise NeedsHuman(todo[0]["text"])
    summary = f"{first['pattern']} recovery: " + "; ".join(first["plan"])
    for line in first.get("impact") or []:
        print(f"NOTE: {line}", flush=True)
        summary += f" [{line}]"
    done, passed = [], set()
    with journal.operation(ctx, c.name, action, args, yes=yes, summary=summary) as op:
        d = first
        for _ in range(max_steps):
            # a check that passed (pgpool.check, web.check) is not run again for the same failure
            todo = [s for s in _todo(d) if step_key(s) not in passed]
            if d["pattern"] == "healthy" and not todo:
                break
            if not todo:
                raise HaError(f"{c.name}: {d['pattern']} failure and no step left to run: "
                              f"escalate to the system administrator", HaError.NOT_CONVERGED)
            plan_step = todo[0]
            if plan_step["task"] == "manual":
                raise NeedsHuman(plan_step["text"])
            line = rules.render(plan_step)
            if done and done[-1] == step_key(plan_step):
                raise HaError(f"step `{line}` did not cure the {d['pattern']} failure: "
                              f"escalate to the system administrator "
                              f"({'; '.join(d['evidence'][:3])})",
                              HaError.NOT_CONVERGED)
            print(f"=== step {len(done) + 1} +{time.monotonic() - t0:.1f}s: {line}  "
                  f"({plan_step['why']})", flush=True)
            op.step(line)
            execute_fn(plan_step)
            if plan_step["task"].endswith(".check"):
                passed.add(step_key(plan_step))
            if op is not None and not remote.is_dry(ctx):
                op.checkpoint(line)
            done.append(step_key(plan_step))
            if remote.is_dry(ctx):
                print("[dry] the following steps depend on the state this one leaves: "
                      "not shown further", flush=True)
                return d
            d = settled(diagnose_fn(), diagnose_fn)
            print(f"--- now: {d['pattern']}" + (f" ({d['host']})" if d.get("host") else ""),
                  flush=True)
        else:
            raise HaError(f"{c.name}: not healthy after {max_steps} steps: {d['pattern']}",
                          HaError.NOT_CONVERGED)
    print(diagnosis_table(d), flush=True)
    print("--- after (before -> after)")
    print(recovery_table(first, d), flush=True)
    print(f"=== done +{time.monotonic() - t0:.1f}s: {len(done)} step{'s' if len(done) != 1 else ''}"
          f" run, {d['pattern']}", flush=True)
    return d
