"""State kept in the cluster itself: the operation lock and the newest-data record.

Two admin hosts (two operators) drive the same clusters; what one of them knows must not live on
its disk alone. Like the ``pgsql`` resource agent (``pgsql-data-status`` node attributes) and
Patroni (leader key in the DCS), hatasks keeps it in the store the cluster already replicates:
Pacemaker's CIB. When the CIB cannot be reached (both stacks down: the runbook's own step stops
them), the same facts go to files on the cluster's hosts, never to the admin host alone.

**The lock** of cluster C is held in *stores*, taken in a fixed order:

1. the CIB: a ``cluster_property_set`` with the fixed id ``hatasks-lock`` in ``crm_config``,
   created with ``cibadmin --create`` (Pacemaker refuses, exit 108 "File exists", when the id
   is there: the create is the atomic test-and-set). It is not a cluster option Pacemaker knows,
   so the scheduler ignores it; a property set was chosen over an nvpair in the main set so that
   a conditional delete/modify can name it by id and by owner token (``--xpath``);
2. a file ``<lock_dir>/lock.C`` on every host of C (``lock_dir`` default ``/var/lib/hatasks``),
   created and checked under ``flock`` on that host. These are written even while the CIB
   answers: when an operation stops both stacks, the lock must stay held without a gap.

Each store holds the owner (``user``, admin ``host``, ``pid``, ``action``, ``since``, a random
``token``), the ``lease`` in seconds and ``renewed``, the epoch of the last renewal taken from
the cluster node's own clock (admin hosts' clocks do not matter). The holder renews every
store every ``lease/3`` seconds from a background thread while its operation runs. A store
whose lease has run out (holder killed, admin host cut off) is taken over, with a message naming
the previous holder; the CIB takeover is a delete conditioned on the old token followed by the
create, so two operators taking over at once cannot both win. Any store held by someone else
with a live lease refuses the whole lock (LOCKED, exit 5, naming the holder) and what was taken
is given back. No store reachable at all: UNREACHABLE, never a lock of the admin host alone.

**The newest-data record** (journal.record_newest) is written as permanent node attributes of
every DB node (``crm_attribute --lifetime forever``: ``hatasks-newest`` = the record as JSON,
``hatasks-data-status`` = LATEST or STALE as the pgsql agent does) and as ``newest.C.json`` in
``lock_dir`` on every host that answers. :func:`read_newest` returns the latest of them.

Settings (``ctx.config.hatasks``): ``cluster_state`` (config.DEFAULTS: off until the lab suite runs with it; a context built
without it keeps everything local), ``lock_lease`` (seconds, 60),
``lock_dir``. Values reach the shell only through ``shell.q``.
"""

import json
import os
import re
import secrets
import socket
import sys
import threading
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from hatasks import remote
from hatasks.errors import HaError, UnreachableError
from hatasks.shell import q

CIB_ID = "hatasks-lock"
NEWEST_ATTR = "hatasks-newest"
STATUS_ATTR = "hatasks-data-status"
FIELDS = ("token", "cluster", "user", "host", "pid", "proc", "action", "since", "lease")
#: cibadmin exit codes: the object exists / no such object
CIB_EXISTS, CIB_NO_MATCH = 108, 105
DEFAULT_LEASE = 60
DEFAULT_DIR = "/var/lib/hatasks"
_TOKEN = re.compile(r"^[0-9a-f]{1,64}$")


# ---------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------


def _conf(ctx, key, default):
    try:
        value = ctx.config.hatasks[key]
    except (AttributeError, KeyError, TypeError):
        return default
    return default if value is None else value


def enabled(ctx):
    """True when the lock and the newest record are kept in the cluster (``cluster_state``)."""
    value = _conf(ctx, "cluster_state", False)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def lease(ctx):
    try:
        value = int(float(_conf(ctx, "lock_lease", DEFAULT_LEASE)))
    except (TypeError, ValueError):
        raise HaError(f"hatasks.lock_lease must be a number of seconds, "
                      f"not {_conf(ctx, 'lock_lease', None)!r}", HaError.USAGE) from None
    return max(value, 3)


def lock_dir(ctx):
    path = str(_conf(ctx, "lock_dir", DEFAULT_DIR))
    if not path.startswith("/"):
        raise HaError(f"hatasks.lock_dir must be an absolute path, not {path!r}", HaError.USAGE)
    return path.rstrip("/") or "/"


def cluster_hosts(ctx, cluster):
    """The cluster's host names in inventory order, or [] when the inventory has no such
    cluster (then nothing is kept in a cluster)."""
    try:
        return list(remote.inventory(ctx).cluster(cluster).host_names)
    except HaError:
        return []


def crm_nodes(ctx, cluster):
    """{inventory host name: Pacemaker node name} (host var ``crm_node``, else the same name)."""
    try:
        c = remote.inventory(ctx).cluster(cluster)
    except HaError:
        return {}
    return {h.name: h.vars.get("crm_node") or h.name for h in c.hosts}


def _now_iso():
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def describe(cluster, info):
    """The one line naming a lock's holder."""
    text = (f"cluster {cluster} is locked by {info.get('user', '?')} (pid {info.get('pid', '?')}"
            f" on {info.get('host', '?')}) running {info.get('action', '?')}"
            f" since {info.get('since', '?')}")
    left = info.get("left")
    if left is not None:
        text += f"; its lease ends in {left}s unless renewed"
    where = info.get("store")
    return text + (f" [lock in {where}]" if where else "")


# ---------------------------------------------------------------------------
# the CIB store
# ---------------------------------------------------------------------------


def _xpath(token=None):
    base = f'//crm_config/cluster_property_set[@id="{CIB_ID}"]'
    if token is not None:
        base += f'[nvpair[@name="token"][@value="{token}"]]'
    return base


def lock_xml(owner, with_renewed=True):
    """The property set as XML, split around the place the node's clock goes:
    (head, tail); the shell puts ``$now`` between them."""
    from xml.sax.saxutils import quoteattr  # on first use: it imports urllib and email

    pairs = "".join(f"<nvpair id={quoteattr(CIB_ID + '-' + k)} name={quoteattr(k)}"
                    f" value={quoteattr(str(owner[k]))}/>" for k in FIELDS)
    head = f"<cluster_property_set id={quoteattr(CIB_ID)}>{pairs}"
    if not with_renewed:
        return head + "</cluster_property_set>", ""
    return head + f"<nvpair id={quoteattr(CIB_ID + '-renewed')} name=\"renewed\" value=\"", \
        "\"/></cluster_property_set>"


def cib_create_command(owner, old_token=None):
    """One shell command: (conditionally delete the expired set of OLD_TOKEN,) create ours with
    the node's clock, print ``rc=`` and ``now=``, and on "exists" the set that is there."""
    head, tail = lock_xml(owner)
    pre = ""
    if old_token is not None:
        pre = f"cibadmin --delete --xpath {q(_xpath(old_token))} >/dev/null 2>&1; "
    return (f"{pre}now=$(date +%s); cibadmin --create -o crm_config -X {q(head)}\"$now\"{q(tail)}"
            f" >/dev/null 2>&1; rc=$?; echo rc=$rc; echo now=$now; "
            f"if [ $rc = {CIB_EXISTS} ]; then cibadmin --query --xpath {q(_xpath())}; fi")


def cib_query_command():
    return (f"now=$(date +%s); out=$(cibadmin --query --xpath {q(_xpath())} 2>/dev/null);"
            f" echo rc=$?; echo now=$now; printf '%s\\n' \"$out\"")


def cib_renew_command(token):
    from xml.sax.saxutils import quoteattr

    pair = (f"<cluster_property_set id={quoteattr(CIB_ID)}><nvpair id={quoteattr(CIB_ID + '-renewed')}"
            " name=\"renewed\" value=\"")
    return (f"now=$(date +%s); cibadmin --modify --xpath {q(_xpath(token))} -X {q(pair)}\"$now\""
            f"{q(chr(34) + '/></cluster_property_set>')} >/dev/null 2>&1; echo rc=$?")


def cib_delete_command(token=None):
    """Delete the set (ours only, when TOKEN is given)."""
    return f"cibadmin --delete --xpath {q(_xpath(token))} >/dev/null 2>&1; echo rc=$?"


def _kv(text):
    out = {}
    for line in text.splitlines():
        if line.startswith(("rc=", "now=")):
            key, _, value = line.partition("=")
            out.setdefault(key, value.strip())
    return out


def parse_cib_set(text):
    """The owner dict of a ``cluster_property_set`` in TEXT (cibadmin --query), or None."""
    start = text.find("<cluster_property_set")
    if start < 0:
        return None
    try:
        root = ET.fromstring(text[start:text.rfind(">") + 1])
    except ET.ParseError:
        return None
    info = {p.get("name"): p.get("value") for p in root.iter("nvpair")}
    return info or None


def _with_expiry(info, now):
    """INFO plus ``left`` (seconds of lease left at node time NOW; <= 0: expired, also when
    the holder's process is known gone: ``dead``)."""
    info = dict(info)
    try:
        info["left"] = int(info.get("renewed")) + int(info.get("lease")) - int(now)
    except (TypeError, ValueError):
        info["left"] = 0    # unreadable: treat as expired
    if info["left"] > 0 and dead_here(info):
        info["left"], info["dead"] = 0, True
    return info


def proc_id():
    """This process's boot and pid namespace. With the admin host's name and the pid it says
    where a holder's pid can be checked: only a process on this host, this boot and this pid
    namespace can be known dead here ("" when /proc does not tell)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def dead_here(info):
    """True when INFO's holder ran on this admin host (same name, boot and pid namespace) and
    its process is gone: a task killed by SIGKILL leaves its lease in the cluster, and nothing
    renews it. A pid that is alive (even reused by another process) or that cannot be checked
    keeps the lease: the safe direction."""
    me = proc_id()
    if not me or info.get("proc") != me or info.get("host") != socket.gethostname():
        return False
    try:
        pid = int(info.get("pid"))
    except (TypeError, ValueError):
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass
    return False


# ---------------------------------------------------------------------------
# the host-file store: one script, run under flock on the host
# ---------------------------------------------------------------------------

_HOST_SCRIPT = r"""d=%(dir)s; c=%(cluster)s; f="$d/lock.$c"; tok=%(token)s; op=%(op)s; stale=%(stale)s
mkdir -p "$d" && chmod 700 "$d" && exec 9>"$d/.guard" && flock -w 10 9 || { echo STATE=error; exit 0; }
now=$(date +%%s); echo now=$now
if [ -s "$f" ]; then
  cur=$(sed -n 's/^token=//p' "$f"); r=$(sed -n 's/^renewed=//p' "$f"); l=$(sed -n 's/^lease=//p' "$f")
  left=$(( ${r:-0} + ${l:-0} - now ))
else
  cur=; left=0
fi
write() { printf '%%s\n' %(body)s "renewed=$now" > "$f.tmp" && chmod 600 "$f.tmp" && mv "$f.tmp" "$f"; }
case "$op" in
show) [ -s "$f" ] && { echo STATE=held; echo left=$left; cat "$f"; } || echo STATE=free ;;
take)
  if [ -n "$cur" ] && [ "$cur" != "$tok" ] && [ "$left" -gt 0 ] && [ "$cur" != "$stale" ]; then echo STATE=held; echo left=$left; cat "$f"
  elif [ -n "$cur" ] && [ "$cur" != "$tok" ]; then echo STATE=takeover; echo left=$left; cat "$f"; write
  else write && echo STATE=taken; fi ;;
renew)
  if [ -z "$cur" ] || [ "$cur" = "$tok" ]; then write && echo STATE=taken
  elif [ "$left" -gt 0 ]; then echo STATE=held; echo left=$left; cat "$f"
  else echo STATE=takeover; echo left=$left; cat "$f"; write; fi ;;
release) [ "$cur" = "$tok" ] && rm -f "$f"; echo STATE=free ;;
break) [ -s "$f" ] && { echo STATE=held; cat "$f"; }; rm -f "$f"; echo STATE=free ;;
esac
"""


def host_command(ctx, cluster, op, owner=None, stale=""):
    """The host-file script for OP (show take renew release break) as one shell command; a
    ``take`` also takes over the file of the STALE token (a holder known dead: dead_here)."""
    owner = owner or {}
    body = " ".join(q(f"{k}={owner.get(k, '')}") for k in FIELDS)
    return _HOST_SCRIPT % {"dir": q(lock_dir(ctx)), "cluster": q(cluster),
                           "token": q(owner.get("token", "")), "op": q(op), "body": body,
                           "stale": q(stale or "")}


def parse_host_output(text):
    """(state, now, info) from the host script's output."""
    state, now, info = None, None, {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "STATE":
            state = value.strip()
        elif key == "now" and now is None:
            now = value.strip()
        elif key in FIELDS or key in ("renewed", "left"):
            info.setdefault(key, value.strip())
    if "left" in info:
        try:
            info["left"] = int(info["left"])
        except ValueError:
            info["left"] = 0
    return state, now, info


# ---------------------------------------------------------------------------
# taking, renewing, giving back
# ---------------------------------------------------------------------------


class Held:
    """A cluster lock this process holds: the stores taken, the renewal thread."""

    def __init__(self, ctx, cluster, owner, cib_node, hosts):
        self.ctx = ctx
        self.cluster = cluster
        self.owner = owner
        self.cib_node = cib_node      # the node whose CIB holds our set, or None
        self.hosts = list(hosts)      # hosts holding our file
        self.took_over = []           # the previous holders whose leases had run out
        self.lost = []                # stores taken from us while we held them
        self._stop = threading.Event()
        self._thread = None

    @property
    def stores(self):
        return (["CIB"] if self.cib_node else []) + [f"file on {h}" for h in self.hosts]

    def start_renewing(self):
        interval = max(1.0, int(self.owner["lease"]) / 3.0)
        self._thread = threading.Thread(target=self._renew_loop, args=(interval,),
                                        name=f"hatasks-lock-{self.cluster}", daemon=True)
        self._thread.start()

    def _renew_loop(self, interval):
        while not self._stop.wait(interval):
            try:
                self.renew()
            except Exception as exc:   # a renewal must never kill the operation
                print(f"hatasks: warning: renewing the lock of cluster {self.cluster}: {exc}",
                      file=sys.stderr, flush=True)

    def renew(self):
        """Renew every store; take the ones that came back (a host that answers again, the CIB
        once a stack runs). A store someone else took is reported once in ``lost``."""
        ctx, cluster = self.ctx, self.cluster
        cib_done = False
        for node in cluster_hosts(ctx, cluster):
            if self.cib_node is None:
                break
            try:
                res = remote.run(ctx, node, cib_renew_command(self.owner["token"]),
                                 probe=True, warn=True, timeout=30)
            except HaError:
                continue
            rc = _kv(res.stdout).get("rc")
            if rc == "0":
                self.cib_node = node
                cib_done = True
                break
            if rc == str(CIB_NO_MATCH):
                # our set is gone (broken, or deleted by a taker that then gave up): take it
                # again unless someone else holds it now
                cib_done = True
                node, state, info = _cib_take(ctx, cluster, self.owner)
                if state in ("taken", "takeover"):
                    self.cib_node = node
                else:
                    self.cib_node = None
                    self._lose("CIB", info)
                break
        if self.cib_node is None and not cib_done and "CIB" not in self.lost:
            node, state, _ = _cib_take(ctx, cluster, self.owner)
            if state == "taken":
                self.cib_node = node
        for host in cluster_hosts(ctx, cluster):
            try:
                res = remote.run(ctx, host, host_command(ctx, cluster, "renew", self.owner),
                                 probe=True, warn=True, timeout=30)
            except HaError:
                continue
            state, _, info = parse_host_output(res.stdout)
            if state in ("taken", "takeover") and host not in self.hosts:
                self.hosts.append(host)
            elif state == "held":
                self._lose(f"file on {host}", info)
                if host in self.hosts:
                    self.hosts.remove(host)

    def _lose(self, store, info=None):
        if store in self.lost:
            return
        self.lost.append(store)
        who = f" to {describe(self.cluster, info)}" if info else ""
        print(f"hatasks: warning: the lock of cluster {self.cluster} in the {store} was taken"
              f" from this operation{who}", file=sys.stderr, flush=True)

    def release(self):
        """Stop renewing and give every store back (ours only: conditioned on the token)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        ctx, cluster, token = self.ctx, self.cluster, self.owner["token"]
        cib_node = self.cib_node

        def give_back(host):
            # the CIB's set goes with the file of the node that holds it: one command per host,
            # every host at once
            command = host_command(ctx, cluster, "release", self.owner)
            if host == cib_node:
                command += cib_delete_command(token) + "\n"
            return remote.run(ctx, host, command, probe=True, warn=True, timeout=30)

        hosts = cluster_hosts(ctx, cluster)
        done = remote.probe_many(ctx, hosts, give_back)
        first = done.get(cib_node)
        if cib_node and (isinstance(first, HaError) or _kv(first.stdout).get("rc") != "0"):
            # that node's CIB is gone (the operation stopped its stack): any other node's CIB
            # holds the same set
            for node in [h for h in hosts if h != cib_node]:
                try:
                    res = remote.run(ctx, node, cib_delete_command(token), probe=True,
                                     warn=True, timeout=30)
                except HaError:
                    continue
                if _kv(res.stdout).get("rc") == "0":
                    break


def new_owner(ctx, cluster, action, user):
    return {"token": secrets.token_hex(8), "cluster": cluster, "user": user,
            "host": socket.gethostname(), "pid": os.getpid(), "proc": proc_id(), "action": action,
            "since": _now_iso(), "lease": lease(ctx)}


def _cib_take(ctx, cluster, owner):
    """Try the CIB on each node in order: (node, state, info) with state taken / takeover /
    held / down (no node's CIB answers)."""
    for node in cluster_hosts(ctx, cluster):
        try:
            res = remote.run(ctx, node, cib_create_command(owner), probe=True, warn=True,
                             timeout=30)
        except HaError:
            continue
        kv = _kv(res.stdout)
        if kv.get("rc") == "0":
            return node, "taken", None
        if kv.get("rc") == str(CIB_EXISTS) and not _TOKEN.match(
                (parse_cib_set(res.stdout) or {}).get("token", "")):
            return node, "held", dict(parse_cib_set(res.stdout) or {}, store="CIB (unreadable"
                                      " token: lock.break it)")
        if kv.get("rc") != str(CIB_EXISTS):
            continue               # this node's CIB does not answer: its stack is down
        info = parse_cib_set(res.stdout) or {}
        info = _with_expiry(info, kv.get("now"))
        if info.get("token") == owner["token"]:
            return node, "taken", None
        if info["left"] > 0:
            return node, "held", dict(info, store="CIB")
        # the lease ran out: delete THAT set (by its token) and create ours in one command
        res = remote.run(ctx, node, cib_create_command(owner, old_token=info.get("token", "")),
                         probe=True, warn=True, timeout=30)
        kv2 = _kv(res.stdout)
        if kv2.get("rc") == "0":
            return node, "takeover", info
        fresh = _with_expiry(parse_cib_set(res.stdout) or {}, kv2.get("now"))
        return node, "held", dict(fresh, store="CIB")
    return None, "down", None


def take(ctx, cluster, action, user):
    """Take CLUSTER's lock in the cluster (None when not kept there). LOCKED HaError naming the
    holder when any store is held; UnreachableError when no store answers. Starts renewing."""
    if not enabled(ctx) or not cluster_hosts(ctx, cluster):
        return None
    owner = new_owner(ctx, cluster, action, user)
    held = Held(ctx, cluster, owner, None, [])

    def refuse(info, where):
        held.release()
        raise HaError(describe(cluster, dict(info, store=where)), HaError.LOCKED)

    node, state, info = _cib_take(ctx, cluster, owner)
    if state == "held":
        raise HaError(describe(cluster, info), HaError.LOCKED)
    if state in ("taken", "takeover"):
        held.cib_node = node
    if state == "takeover":
        held.took_over.append(dict(info, store="CIB"))
    stale = next((i.get("token", "") for i in held.took_over if i.get("dead")), "")

    def take_file(host, stale=stale):
        res = remote.run(ctx, host, host_command(ctx, cluster, "take", owner, stale), probe=True,
                         warn=True, timeout=30)
        answer = parse_host_output(res.stdout)
        hstate, _, hinfo = answer
        if hstate == "held" and hinfo.get("token") != stale and dead_here(hinfo):
            # a holder on this admin host whose process is gone: its file is taken over
            res = remote.run(ctx, host, host_command(ctx, cluster, "take", owner,
                                                     hinfo.get("token", "")),
                             probe=True, warn=True, timeout=30)
            answer = parse_host_output(res.stdout)
        return answer

    hosts = cluster_hosts(ctx, cluster)
    if held.cib_node:
        # the CIB already decided between contenders: the files can go in parallel
        answers = remote.probe_many(ctx, hosts, take_file)
    else:
        # no CIB: the files decide, in one order for everybody
        answers = {}
        for host in hosts:
            try:
                answers[host] = take_file(host)
            except HaError as exc:
                answers[host] = exc
    for host, answer in answers.items():
        if isinstance(answer, HaError):
            continue
        hstate, _, hinfo = answer
        if hstate == "takeover" and int(hinfo.get("left") or 0) > 0:
            hinfo["dead"] = True    # a live lease is taken over only as a dead holder's
        if hstate == "held":
            refuse(hinfo, f"file on {host}")
        if hstate in ("taken", "takeover"):
            held.hosts.append(host)
        if hstate == "takeover" and hinfo.get("token") not in [t.get("token")
                                                               for t in held.took_over]:
            held.took_over.append(dict(hinfo, store=f"file on {host}"))
    if not held.stores:
        raise UnreachableError(
            f"cannot lock cluster {cluster}: neither its CIB nor any of its hosts "
            f"({', '.join(cluster_hosts(ctx, cluster))}) answers; not taking the lock on "
            "this admin host alone")
    for prev in held.took_over:
        why = ("its process is gone (killed)" if prev.get("dead") else
               f"its lease ran out {-int(prev.get('left') or 0)}s ago")
        print(f"hatasks: taking over the lock of cluster {cluster} from "
              f"{prev.get('user', '?')} (pid {prev.get('pid', '?')} on {prev.get('host', '?')})"
              f" running {prev.get('action', '?')} since {prev.get('since', '?')}: {why}"
              f" ({prev.get('store')})", file=sys.stderr, flush=True)
    held.start_renewing()
    return held


def show(ctx, cluster):
    """What every store says about CLUSTER's lock: a list of {store, state, ...owner, left}."""
    rows = []
    hosts = cluster_hosts(ctx, cluster)
    cib = {"store": "CIB", "state": "down"}
    for node in hosts:
        try:
            res = remote.run(ctx, node, cib_query_command(), probe=True, warn=True, timeout=30)
        except HaError:
            continue
        kv = _kv(res.stdout)
        if kv.get("rc") == "0":
            info = _with_expiry(parse_cib_set(res.stdout) or {}, kv.get("now"))
            cib = dict(info, store="CIB", state="held" if info["left"] > 0 else
                       "dead" if info.get("dead") else "expired",
                       node=node)
            break
        if kv.get("rc") == str(CIB_NO_MATCH):
            cib = {"store": "CIB", "state": "free", "node": node}
            break
    rows.append(cib)

    def one(host):
        res = remote.run(ctx, host, host_command(ctx, cluster, "show"), probe=True, warn=True,
                         timeout=30)
        return parse_host_output(res.stdout)

    for host, got in remote.probe_many(ctx, hosts, one).items():
        if isinstance(got, HaError):
            rows.append({"store": f"file on {host}", "state": "unreachable", "error": got.message})
            continue
        state, _, info = got
        if state == "held":
            state = "held" if int(info.get("left") or 0) > 0 else "expired"
            if state == "held" and dead_here(info):
                state = "dead"
        rows.append(dict(info, store=f"file on {host}", state=state or "error"))
    return rows


def holder(ctx, cluster):
    """The live holder of CLUSTER's lock in the cluster (a dict) or None."""
    if not enabled(ctx) or not cluster_hosts(ctx, cluster):
        return None
    for row in show(ctx, cluster):
        if row.get("state") == "held":
            return row
    return None


def break_lock(ctx, cluster):
    """Remove CLUSTER's lock from every store, whoever holds it."""
    hosts = cluster_hosts(ctx, cluster)
    for node in hosts:
        try:
            res = remote.run(ctx, node, cib_delete_command(), warn=True, timeout=30)
        except HaError:
            continue
        if _kv(res.stdout).get("rc") in ("0", "") or remote.is_dry(ctx):
            break
    for host in hosts:
        try:
            remote.run(ctx, host, host_command(ctx, cluster, "break"), warn=True, timeout=30)
        except HaError:
            continue


# ---------------------------------------------------------------------------
# the newest-data record
# ---------------------------------------------------------------------------


def newest_write_command(ctx, cluster, record, nodes, with_cib):
    """Write RECORD (a dict) as the host's file and, WITH_CIB, as node attributes of NODES
    ({inventory name: Pacemaker node name})."""
    text = json.dumps(record, default=str, sort_keys=True)
    d = lock_dir(ctx)
    path = f"{d}/newest.{cluster}.json"
    parts = [f"umask 077; mkdir -p {q(d)} && chmod 700 {q(d)} && printf '%s\\n' {q(text)} > {q(path + '.tmp')}"
             f" && mv {q(path + '.tmp')} {q(path)}; echo file=$?"]
    if with_cib:
        evidence = record.get("evidence") if isinstance(record.get("evidence"), dict) else {}
        in_sync = evidence.get("in_sync")
        cmds = []
        for host, node in nodes.items():
            status = "LATEST" if in_sync or record.get("newest") in (host, node) else "STALE"
            cmds.append(f"crm_attribute --lifetime forever --node {q(node)} --name {q(NEWEST_ATTR)}"
                        f" --update {q(text)} && crm_attribute --lifetime forever --node {q(node)}"
                        f" --name {q(STATUS_ATTR)} --update {q(status)}")
        parts.append("{ " + " && ".join(cmds) + "; } >/dev/null 2>&1; echo cib=$?")
    return "; ".join(parts)


def write_newest(ctx, cluster, record):
    """Keep RECORD in CLUSTER's CIB (node attributes) and as a file on every host that answers.
    Returns where it went (a list of store names); [] when not kept in the cluster."""
    hosts = cluster_hosts(ctx, cluster) if enabled(ctx) else []
    if not hosts:
        return []
    nodes = crm_nodes(ctx, cluster)

    def write(host, with_cib):
        res = remote.run(ctx, host, newest_write_command(ctx, cluster, record, nodes, with_cib),
                         probe=True, warn=True, timeout=60)
        return {k: v for k, _, v in (ln.partition("=") for ln in res.stdout.splitlines())}

    # the CIB once, through the first host, while the other hosts write their files at once;
    # when that host's CIB does not take it, the next hosts try in turn (their file again)
    first = remote.probe_many(ctx, hosts, lambda h: write(h, h == hosts[0]))
    where, cib_done = [], False
    for host in hosts:
        kv = first[host]
        if not isinstance(kv, HaError) and kv.get("cib") == "0":
            cib_done = True
            where.append("CIB")
        if not isinstance(kv, HaError) and kv.get("file") == "0":
            where.append(f"file on {host}")
    for host in hosts[1:]:
        if cib_done:
            break
        try:
            kv = write(host, True)
        except HaError:
            continue
        if kv.get("cib") == "0":
            cib_done = True
            where.insert(0, "CIB")
    return where


def newest_read_command(ctx, cluster):
    path = f"{lock_dir(ctx)}/newest.{cluster}.json"
    xp = f'//nodes/node/instance_attributes/nvpair[@name="{NEWEST_ATTR}"]'
    return (f"echo '--file'; cat {q(path)} 2>/dev/null; echo; echo '--cib';"
            f" cibadmin --query --xpath {q(xp)} 2>/dev/null; rc=$?; echo; echo \"--rc=$rc\"")


def parse_newest_output(text):
    """The records found in the read command's output (file and CIB), as dicts."""
    found = []
    file_part, _, cib_part = text.partition("--cib")
    file_part = file_part.replace("--file", "", 1).strip()
    if file_part:
        try:
            rec = json.loads(file_part)
            if isinstance(rec, dict):
                found.append(dict(rec, kept_in="file"))
        except ValueError:
            pass
    cib_part = cib_part.rsplit("--rc=", 1)[0].strip()
    if cib_part:
        try:
            root = ET.fromstring(f"<r>{cib_part}</r>")
        except ET.ParseError:
            root = None
        for pair in (root.iter("nvpair") if root is not None else ()):
            try:
                rec = json.loads(pair.get("value") or "")
            except ValueError:
                continue
            if isinstance(rec, dict):
                found.append(dict(rec, kept_in="CIB"))
    return found


def read_newest(ctx, cluster):
    """The latest newest-data record kept in CLUSTER (CIB or host files), or None. Reads the
    first host that answers with a CIB; hosts before it (no CIB) add their files."""
    hosts = cluster_hosts(ctx, cluster) if enabled(ctx) else []
    if not hosts:
        return None
    found = []
    for host in hosts:
        try:
            res = remote.run(ctx, host, newest_read_command(ctx, cluster), probe=True,
                             warn=True, timeout=30)
        except HaError:
            continue
        recs = parse_newest_output(res.stdout)
        found += recs
        if any(r["kept_in"] == "CIB" for r in recs) or "--rc=0" in res.stdout:
            break
    found = [r for r in found if r.get("cluster") in (None, cluster)]
    if not found:
        return None
    return max(found, key=lambda r: str(r.get("ts") or ""))
