"""The lab: four hosts (db01 db02 lb01 lb02) on one machine, each a set of namespaces.

Each host is a network namespace ``hl{N}-HOST`` plus its own UTS, IPC, mount and PID namespaces,
whose PID 1 is ``lab/hostinit.sh``. The hosts sit on a private bridge ``hlbr{N}`` (10.231.N.1/24)
through veth pairs ``hl{N}v-HOST`` (the host side is ``eth0``). No default route, no IPv6 on lab
links, ip_forward must be 0. Instance N is chosen with HATASKS_LAB=N, so several labs can run at
once. All state of instance N (per-host file trees, keys, ssh_config, hosts.ini, pgpass, the fault
record) lives in ``lab/.state/N``.

Everything here talks to the hosts with ``ip netns``/``nsenter`` and subprocess: the lab does not
depend on hatasks' own inventory or remote modules (it is what they are tested on).
"""

import concurrent.futures
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET

from hatasks.errors import HaError, StateError, UsageError

LAB_DIR = pathlib.Path(__file__).resolve().parent
ROOT = LAB_DIR.parent
HOSTS = ("db01", "db02", "lb01", "lb02")
DB_HOSTS = ("db01", "db02")
LB_HOSTS = ("lb01", "lb02")
OCTET = {"db01": 11, "db02": 12, "lb01": 21, "lb02": 22}
NODE_ID = {"db01": 1, "db02": 2, "lb01": 1, "lb02": 2}
FAULT_KINDS = ("power", "network", "heartbeat", "pgpool", "postgres", "httpd")
PG_BIN = "/usr/lib/postgresql/15/bin"
PGDATA = "/var/lib/postgresql/15/data"
PG_HOME = "/var/lib/postgresql"
APP_DB = "GYOM_DB"
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
MARK = "hatasks-lab"
# directories every host gets its own copy of (bind-mounted by hostinit.sh)
HOST_DIRS = (
    "etc/corosync",
    "var/lib/pacemaker",
    "var/lib/corosync",
    "var/log",
    "etc/pgpool2",
    "var/lib/postgresql",
    "etc/apache2",
    "var/www",
    "root",
    "var/tmp",
)
NEEDED = (
    "ip",
    "nsenter",
    "unshare",
    "corosync",
    "pacemakerd",
    "crm_mon",
    "pgpool",
    "sshd",
    "ssh-keygen",
    "apache2",
    "psql",
)


class LabError(HaError):
    """A lab failure (exit code 1 unless given)."""


def instance_from_env():
    raw = os.environ.get("HATASKS_LAB", "0") or "0"
    if not raw.isdigit() or int(raw) > 255:
        raise UsageError(f"HATASKS_LAB must be a number 0..255, not {raw!r}")
    return int(raw)


def sh(argv, check=True, input=None, timeout=60, env=None, cwd="/"):
    """Run a command on the operator machine; return CompletedProcess (text)."""
    try:
        proc = subprocess.run(
            argv, input=input, text=True, capture_output=True, timeout=timeout, env=env, cwd=cwd
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}")
    if check and proc.returncode != 0:
        raise LabError(
            f"command failed (rc={proc.returncode}): {' '.join(argv)}\n"
            f"{(proc.stdout + proc.stderr).strip()}"
        )
    return proc


def code_version():
    """A digest of the lab's code (scripts, agent, this module): a live lab built from other code
    is rebuilt by lab.up instead of being reported healthy."""
    digest = hashlib.sha256()
    files = [LAB_DIR / "core.py", LAB_DIR / "hostinit.sh", LAB_DIR / "ocf" / "pgpool"]
    files += sorted((LAB_DIR / "bin").iterdir()) + sorted((LAB_DIR / "pg").iterdir())
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def nspid_chain(pid):
    """The NSpid line of /proc/PID/status as ints ([] when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except OSError:
        pass
    return []


def wait_until(what, fn, timeout, interval=0.5):
    """Poll fn() until it returns a truthy value; LabError naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
        except LabError as exc:
            last = None
            err = exc
        else:
            err = None
        if last:
            return last
        if time.monotonic() > deadline:
            detail = f": {err.message}" if err else ""
            raise LabError(
                f"timed out after {timeout}s waiting for {what}{detail}", HaError.NOT_CONVERGED
            )
        time.sleep(interval)


def parse_crm_mon(xml_text):
    """crm_mon XML -> {'nodes': {name: 'online|standby|offline'}, 'resources': {id: [nodes]},
    'failures': [(op_key, node, exitstatus)]}. Just what the lab needs for its health check."""
    root = ET.fromstring(xml_text)
    nodes = {}
    for n in root.iter("node"):
        if n.get("online") is None:
            continue
        if n.get("online") != "true":
            state = "offline"
        elif n.get("standby") == "true":
            state = "standby"
        else:
            state = "online"
        nodes[n.get("name")] = state
    resources = {}
    for r in root.iter("resource"):
        if r.get("role") == "Started" and r.get("active") == "true" and r.get("failed") != "true":
            resources[r.get("id")] = [n.get("name") for n in r.findall("node")]
        else:
            resources.setdefault(r.get("id"), [])
    failures = [(f.get("op_key"), f.get("node"), f.get("exitstatus")) for f in root.iter("failure")]
    return {"nodes": nodes, "resources": resources, "failures": failures}


class Lab:
    """Lab instance N: names, addresses, paths, and the operations on it."""

    def __init__(self, n=None, out=print):
        self.n = instance_from_env() if n is None else int(n)
        if not 0 <= self.n <= 255:
            raise UsageError("lab instance must be 0..255")
        self.out = out
        self.net = f"10.231.{self.n}"
        self.subnet = f"{self.net}.0/24"
        self.gw = f"{self.net}.1"
        self.bridge = f"hlbr{self.n}"
        self.db_vip = f"{self.net}.100"
        self.lb_vip = f"{self.net}.200"
        self.state = LAB_DIR / ".state" / str(self.n)
        self.keys = self.state / "ssh"
        self.pgpass = self.state / "pgpass"
        self.t0 = time.monotonic()

    # ---- names and paths ---------------------------------------------------------------------
    def ns(self, host):
        return f"hl{self.n}-{host}"

    def veth(self, host):
        return f"hl{self.n}v-{host}"

    def ip(self, host):
        return f"{self.net}.{OCTET[host]}"

    def hostdir(self, host):
        return self.state / "hosts" / host

    def fs(self, host, path=""):
        return self.hostdir(host) / "fs" / path.lstrip("/")

    def check_host(self, host):
        if host not in HOSTS:
            raise UsageError(f"unknown lab host {host!r} (known: {', '.join(HOSTS)})")

    def progress(self, msg):
        self.out(f"[{time.monotonic() - self.t0:6.1f}s] lab {self.n}: {msg}", flush=True)

    @contextlib.contextmanager
    def locked(self):
        """One lab operation at a time per instance (two `inv lab.up` at once would collide)."""
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.state / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.progress("another lab operation on this instance is running: waiting for it")
                fcntl.flock(f, fcntl.LOCK_EX)
            yield

    # ---- discovery ---------------------------------------------------------------------------
    def netns_present(self):
        return [h for h in HOSTS if os.path.exists(f"/run/netns/{self.ns(h)}")]

    def links_present(self):
        names = os.listdir("/sys/class/net")
        ours = {self.bridge} | {self.veth(h) for h in HOSTS}
        return sorted(n for n in names if n in ours)

    def ns_pids(self, host):
        if not os.path.exists(f"/run/netns/{self.ns(host)}"):
            return []
        proc = sh(["ip", "netns", "pids", self.ns(host)], check=False)
        return [int(p) for p in proc.stdout.split()]

    def pid1(self, host):
        """Root-namespace PID of the host's PID 1 (hostinit.sh), or None when powered off."""
        for pid in self.ns_pids(host):
            chain = nspid_chain(pid)
            if len(chain) == 2 and chain[1] == 1:
                return pid
        return None

    def owner(self):
        """The checkout that made this lab (the bridge's marker), or None."""
        try:
            alias = pathlib.Path(f"/sys/class/net/{self.bridge}/ifalias").read_text().strip()
        except OSError:
            return None
        parts = alias.split(" ", 2)
        if len(parts) == 3 and parts[0] == MARK and parts[1] == str(self.n):
            return parts[2]
        return None

    def live_hosts(self):
        return [h for h in HOSTS if self.ns_pids(h)]

    def link_state(self, host):
        try:
            flags = int(pathlib.Path(f"/sys/class/net/{self.veth(host)}/flags").read_text(), 16)
        except OSError:
            return "absent"
        return "up" if flags & 1 else "down"

    # ---- running things inside a host ---------------------------------------------------------
    def hargv(self, host, script, user="root"):
        pid = self.pid1(host)
        if pid is None:
            raise LabError(f"{host} is powered off (no PID 1)", HaError.UNREACHABLE)
        argv = ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--"]
        env = ["env", "-i", f"PATH={HOST_PATH}", "LANG=C.UTF-8", "TERM=dumb"]
        if user == "root":
            return argv + env + ["HOME=/root", "USER=root", "bash", "-c", script]
        home = PG_HOME if user == "postgres" else "/"
        return (
            argv
            + ["runuser", "-u", user, "--"]
            + env
            + [f"HOME={home}", f"USER={user}", "bash", "-c", script]
        )

    def hrun(self, host, script, user="root", check=True, input=None, timeout=60):
        """Run a bash script inside a lab host (as root or another user); CompletedProcess."""
        proc = sh(self.hargv(host, script, user), check=False, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise LabError(
                f"{host}: command failed (rc={proc.returncode}): {script}\n"
                f"{(proc.stdout + proc.stderr).strip()}"
            )
        return proc

    def crm_mon(self, host):
        proc = self.hrun(host, "crm_mon -1 --output-as=xml", check=False, timeout=20)
        if not proc.stdout.strip().startswith("<"):
            raise LabError(
                f"{host}: crm_mon gave no XML: {(proc.stdout + proc.stderr).strip()[:200]}"
            )
        return parse_crm_mon(proc.stdout)

    def psql(self, host_ip, port, sql, db="postgres", check=True, timeout=30):
        """psql from the operator machine to a lab address (trusted from the lab subnet)."""
        env = {
            "PATH": HOST_PATH,
            "PGCONNECT_TIMEOUT": "5",
            "LANG": "C.UTF-8",
            "PGPASSFILE": str(self.pgpass),
        }
        return sh(
            [
                "psql",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                host_ip,
                "-p",
                str(port),
                "-U",
                "postgres",
                "-d",
                db,
            ],
            input=sql,
            check=check,
            env=env,
            timeout=timeout,
        )

    def pool_nodes(self):
        """SHOW pool_nodes through the DB VIP: [(node_id, host, status)]."""
        proc = self.psql(self.db_vip, 9999, "SHOW pool_nodes;", check=False, timeout=15)
        if proc.returncode != 0:
            raise LabError(f"pgpool at {self.db_vip}:9999: {proc.stderr.strip()[:200]}")
        rows = []
        for line in proc.stdout.splitlines():
            f = line.split("|")
            if len(f) > 3:
                rows.append((f[0], f[1], f[3]))
        return rows

    def http_lb(self):
        with urllib.request.urlopen(f"http://{self.lb_vip}/", timeout=5) as r:
            return r.read().decode(errors="replace")

    # ---- state files -------------------------------------------------------------------------
    def read_json(self, name, default):
        try:
            return json.loads((self.state / name).read_text())
        except (OSError, ValueError):
            return default

    def write_json(self, name, data):
        self.state.mkdir(parents=True, exist_ok=True)
        tmp = self.state / (name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.state / name)

    def faults(self):
        return self.read_json("faults.json", {})

    # ---- health ------------------------------------------------------------------------------
    def problems(self):
        """Everything that keeps this lab from being 'up and healthy' ([] = healthy)."""
        out = []
        off = [h for h in HOSTS if self.pid1(h) is None]
        if off:
            return [f"powered off: {', '.join(off)}"]
        down = [h for h in HOSTS if self.link_state(h) != "up"]
        if down:
            out.append(f"link not up: {', '.join(down)}")
        faults = self.faults()
        if faults:
            out.append(
                "faults recorded: "
                + ", ".join(f"{h}:{f['kind']}" for h, fl in faults.items() for f in fl)
            )
        for hosts, group in ((DB_HOSTS, ("db-vip", "pgpool")), (LB_HOSTS, ("lb-vip", "apache"))):
            try:
                mon = self.crm_mon(hosts[0])
            except LabError as exc:
                out.append(exc.message)
                continue
            for h in hosts:
                if mon["nodes"].get(h) != "online":
                    out.append(f"{h} is {mon['nodes'].get(h, 'unknown')} (seen from {hosts[0]})")
            placed = {tuple(mon["resources"].get(r, [])) for r in group}
            if len(placed) != 1 or len(next(iter(placed))) != 1:
                out.append(
                    f"group of {hosts[0][:2]} cluster not started on one node: "
                    + ", ".join(f"{r}={mon['resources'].get(r)}" for r in group)
                )
            if mon["failures"]:
                out.append(f"failed actions in the {hosts[0][:2]} cluster: {mon['failures']}")
        try:
            nodes = self.pool_nodes()
            if [s for (_, _, s) in nodes] != ["up", "up"]:
                out.append(f"pgpool backends not both up: {nodes}")
        except LabError as exc:
            out.append(exc.message)
        try:
            page = self.http_lb()
            if "lb0" not in page:
                out.append("LB VIP page does not name a host")
        except OSError as exc:
            out.append(f"LB VIP http://{self.lb_vip}/: {exc}")
        return out

    # ---- preflight -----------------------------------------------------------------------------
    def preflight(self):
        if os.geteuid() != 0:
            raise StateError("the lab needs root (namespaces, bridges, mounts)")
        if pathlib.Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "0":
            raise StateError(
                "net.ipv4.ip_forward is not 0 on this machine: the lab refuses to start "
                "(nothing may route out of the lab)"
            )
        missing = [c for c in NEEDED if shutil.which(c, path=HOST_PATH) is None]
        if missing:
            raise StateError(f"missing commands: {', '.join(missing)} (install the lab packages)")

    def check_subnet_free(self):
        """Refuse when 10.231.N.0/24 is in use by anything that is not this lab's bridge."""
        addrs = sh(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines()
        for line in addrs:
            f = line.split()
            if len(f) >= 4 and f[3].startswith(self.net + ".") and f[1] != self.bridge:
                raise StateError(f"subnet {self.subnet} is in use by {f[1]} ({f[3]}): refusing")
        for line in sh(["ip", "-4", "route", "show"]).stdout.splitlines():
            f = line.split()
            if f and f[0].startswith(self.net + ".") and f"dev {self.bridge}" not in line:
                raise StateError(
                    f"subnet {self.subnet} is routed elsewhere ({line.strip()}): refusing"
                )
        if self.n == 0 and pathlib.Path("/sys/class/net/lpbr0").exists():
            raise StateError("bridge lpbr0 (the feasibility lab) holds 10.231.0.0/24: refusing")

    # ---- teardown ------------------------------------------------------------------------------
    def has_objects(self):
        return bool(self.netns_present() or self.links_present())

    def down(self, force=False, quiet=False):
        """Remove everything of instance N: processes (by PID 1), namespaces, links, bridge."""
        if os.geteuid() != 0:
            raise StateError("the lab needs root")
        if not self.has_objects():
            if not quiet:
                self.progress("nothing to remove (no namespaces, no links)")
            self.clear_run_state()
            return
        owner = self.owner()
        live = self.live_hosts()
        if live and owner != str(ROOT) and not force:
            who = f"checkout {owner}" if owner else "an unknown owner (no marker)"
            raise HaError(
                f"lab {self.n} is live ({', '.join(live)} running) and belongs to {who}; "
                f"use --force to tear it down anyway",
                HaError.REFUSED,
            )
        if not live and not quiet:
            self.progress(
                f"stale lab found (namespaces/links, no processes; "
                f"owner {owner or 'unknown'}): clearing"
            )
        for h in HOSTS:
            pid = self.pid1(h)
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for h in HOSTS:
            self._drain(h)
        for h in self.netns_present():
            sh(["ip", "netns", "del", self.ns(h)], check=False)
        for link in self.links_present():
            sh(["ip", "link", "del", link], check=False)
        left = self.netns_present() + self.links_present()
        if left:
            raise LabError(f"could not remove: {', '.join(left)}")
        self.clear_run_state()
        if not quiet:
            self.progress("down (no namespace, link, mount or process left)")

    def _drain(self, host, timeout=10):
        """Wait until no process is left in the host's network namespace (SIGKILL stragglers:
        processes that entered the netns without its PID namespace)."""
        deadline = time.monotonic() + timeout
        killed = False
        while True:
            pids = self.ns_pids(host)
            if not pids:
                return
            if time.monotonic() > deadline:
                raise LabError(f"{host}: processes survive teardown: {pids}")
            if not killed and time.monotonic() > deadline - timeout + 2:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                killed = True
            time.sleep(0.1)

    def clear_run_state(self):
        for name in ("running.json", "faults.json"):
            try:
                (self.state / name).unlink()
            except FileNotFoundError:
                pass

    # ---- build: files --------------------------------------------------------------------------
    def _mkdir(self, path, owner="root", group=None, mode=0o755):
        path.mkdir(parents=True, exist_ok=True)
        shutil.chown(path, owner, group or owner)
        path.chmod(mode)

    def _write(self, path, text, owner="root", group=None, mode=0o644):
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        shutil.chown(path, owner, group or owner)
        path.chmod(mode)

    def _keygen(self, path, comment):
        if not path.exists():
            sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
        return path.with_name(path.name + ".pub").read_text().strip()

    def make_keys(self):
        self._mkdir(self.state, mode=0o755)
        self._mkdir(self.keys, mode=0o700)
        self.lab_pub = self._keygen(self.keys / "id_ed25519", f"hatasks-lab-{self.n}")
        self.pg_pub = self._keygen(
            self.keys / "postgres_id_ed25519", f"postgres@hatasks-lab-{self.n}"
        )
        self.host_pub = {
            h: self._keygen(self.keys / f"ssh_host_{h}_ed25519_key", f"root@{h}") for h in HOSTS
        }
        lines = []
        for h in HOSTS:
            key = " ".join(self.host_pub[h].split()[:2])
            lines.append(f"{h},{self.ip(h)} {key}")
        # the VIPs answer with the key of whichever node holds them
        for h in DB_HOSTS:
            lines.append(f"db-vip,{self.db_vip} {' '.join(self.host_pub[h].split()[:2])}")
        for h in LB_HOSTS:
            lines.append(f"lb-vip,{self.lb_vip} {' '.join(self.host_pub[h].split()[:2])}")
        self.known_hosts = "\n".join(lines) + "\n"
        self._write(self.keys / "known_hosts", self.known_hosts, mode=0o644)
        self.password = secrets.token_hex(16)
        self._write(self.pgpass, f"*:*:*:postgres:{self.password}\n", mode=0o600)

    def etc_hosts(self):
        rows = ["127.0.0.1\tlocalhost", f"{self.gw}\tlabgw"]
        rows += [f"{self.ip(h)}\t{h}" for h in HOSTS]
        rows += [
            f"{self.db_vip}\tdb-vip db",
            f"{self.lb_vip}\tlb-vip",
        ]  # "db": the runbook's name of the DB VIP
        return "\n".join(rows) + "\n"

    def corosync_conf(self, cluster, hosts):
        nodes = "".join(
            f"    node {{\n        ring0_addr: {self.ip(h)}\n        name: {h}\n"
            f"        nodeid: {NODE_ID[h]}\n    }}\n"
            for h in hosts
        )
        return (
            f"# lab {self.n}: written by lab.up\n"
            f"totem {{\n    version: 2\n    cluster_name: {cluster}\n    transport: knet\n"
            f"    crypto_cipher: aes256\n    crypto_hash: sha256\n}}\n"
            f"nodelist {{\n{nodes}}}\n"
            f"quorum {{\n    provider: corosync_votequorum\n    two_node: 1\n}}\n"
            f"logging {{\n    to_logfile: yes\n    logfile: /var/log/corosync/corosync.log\n"
            f"    to_syslog: no\n    to_stderr: no\n    timestamp: on\n}}\n"
        )

    def cib_xml(self, cluster, hosts):
        def nv(prefix, name, value):
            return f'<nvpair id="{prefix}-{name}" name="{name}" value="{value}"/>'

        def ops(rid, start="60s", stop="60s"):
            return (
                f"<operations>"
                f'<op id="{rid}-start-0" name="start" interval="0" timeout="{start}"/>'
                f'<op id="{rid}-stop-0" name="stop" interval="0" timeout="{stop}"/>'
                f'<op id="{rid}-monitor-10s" name="monitor" interval="10s" timeout="20s"/>'
                f"</operations>"
            )

        def ipaddr(rid, vip):
            p = f"{rid}-instance_attributes"
            return (
                f'<primitive id="{rid}" class="ocf" provider="heartbeat" type="IPaddr2">'
                f'<instance_attributes id="{p}">{nv(p, "ip", vip)}{nv(p, "cidr_netmask", "24")}'
                f'{nv(p, "nic", "eth0")}</instance_attributes>{ops(rid, "20s", "20s")}</primitive>'
            )

        if cluster == "dbcluster":
            group = (
                f'<group id="grp-pgpool">{ipaddr("db-vip", self.db_vip)}'
                f'<primitive id="pgpool" class="ocf" provider="lab" type="pgpool">{ops("pgpool")}'
                f"</primitive></group>"
            )
            # initial placement on db01; weaker than stickiness, so no automatic failback
            constraints = (
                '<rsc_location id="loc-grp-pgpool-db01" rsc="grp-pgpool" node="db01" score="50"/>'
            )
            stickiness = "100"
        else:
            p = "apache-instance_attributes"
            group = (
                f'<group id="grp-apache">{ipaddr("lb-vip", self.lb_vip)}'
                f'<primitive id="apache" class="ocf" provider="heartbeat" type="apache">'
                f'<instance_attributes id="{p}">{nv(p, "configfile", "/etc/apache2/apache2.conf")}'
                f'{nv(p, "httpd", "/usr/sbin/apache2")}'
                f'{nv(p, "statusurl", "http://localhost/server-status")}</instance_attributes>'
                f'{ops("apache", "40s", "60s")}</primitive></group>'
            )
            # the LB cluster fails back to lb01 by itself (runbook 5.1.1)
            constraints = (
                '<rsc_location id="loc-grp-apache-lb01" rsc="grp-apache" node="lb01" score="100"/>'
            )
            stickiness = "0"
        b = "cib-bootstrap-options"
        props = "".join(
            nv(b, k, v)
            for k, v in (
                ("dc-deadtime", "5s"),
                ("stonith-enabled", "false"),
                ("no-quorum-policy", "ignore"),
                ("cluster-name", cluster),
                ("cluster-recheck-interval", "1min"),
            )
        )
        nodes = "".join(f'<node id="{NODE_ID[h]}" uname="{h}"/>' for h in hosts)
        return (
            f'<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" '
            f'num_updates="0" '
            f'admin_epoch="0"><configuration><crm_config><cluster_property_set id="{b}">{props}'
            f"</cluster_property_set></crm_config><nodes>{nodes}</nodes>"
            f"<resources>{group}</resources>"
            f"<constraints>{constraints}</constraints>"
            f'<rsc_defaults><meta_attributes id="rsc-options">'
            f'{nv("rsc-options", "resource-stickiness", stickiness)}'
            f"</meta_attributes></rsc_defaults>"
            f"</configuration><status/></cib>\n"
        )

    def pgpool_conf(self):
        backends = ""
        for i, h in enumerate(DB_HOSTS):
            backends += (
                f"backend_hostname{i} = '{h}'\nbackend_port{i} = 5432\nbackend_weight{i} = 1\n"
                f"backend_data_directory{i} = '{PGDATA}'\nbackend_flag{i} = 'ALLOW_TO_FAILOVER'\n"
                f"backend_application_name{i} = '{h}'\n"
            )
        return f"""# pgpool-II 4.3, lab {self.n}: written by lab.up.
# The same backend order on both DB nodes.
backend_clustering_mode = 'native_replication'
listen_addresses = '*'
port = 9999
unix_socket_directories = '/var/run/postgresql'
pcp_listen_addresses = '*'
pcp_port = 9898
pcp_socket_dir = '/var/run/postgresql'
{backends}
# lab: clients are not authenticated by pgpool (backends trust the lab subnet)
enable_pool_hba = off
pool_passwd = ''
num_init_children = 16
max_pool = 2
pid_file_name = '/var/run/postgresql/pgpool.pid'
logdir = '/var/log/postgresql'
log_destination = 'stderr'
log_line_prefix = '%m: %a pid %p: '
# pgpool's own log files (a daemon-mode start has no stderr): /var/log/pgpool/pgpool-YYYY-MM-DD.log
logging_collector = on
log_directory = '/var/log/pgpool'
log_filename = 'pgpool-%Y-%m-%d.log'
load_balance_mode = on
replication_stop_on_mismatch = off
failover_on_backend_error = on
health_check_period = 5
health_check_timeout = 10
health_check_user = 'postgres'
health_check_password = ''
health_check_max_retries = 0
recovery_user = 'postgres'
recovery_password = ''
recovery_1st_stage_command = 'recovery_1st_stage'
recovery_2nd_stage_command = 'recovery_2nd_stage'
recovery_timeout = 90
client_idle_limit_in_recovery = 5
use_watchdog = off
memory_cache_enabled = off
"""

    def pg_settings(self):
        return f"""
# ---- hatasks lab {self.n} (written by lab.up) ----
listen_addresses = '*'
port = 5432
max_connections = 100
shared_buffers = 32MB
unix_socket_directories = '/var/run/postgresql'
logging_collector = on
log_directory = 'log'
log_filename = 'postgresql-%Y-%m-%d.log'
log_line_prefix = '%m [%p] %q%u@%d '
wal_level = replica
max_wal_senders = 5
# lab only: every "server" shares one kernel, so a killed host loses no written page
fsync = off
"""

    def pg_hba(self):
        return f"""# lab {self.n}: written by lab.up
# TYPE  DATABASE     USER  ADDRESS            METHOD
local   all          all                      peer
local   replication  all                      peer
# the tool's direct connections (ssh tunnel to 127.0.0.1): password from lab/.state/N/pgpass
host    all          all   127.0.0.1/32       scram-sha-256
host    replication  all   127.0.0.1/32       scram-sha-256
# LAB ONLY: trust from the lab's private subnet (pgpool's backend and health-check connections,
# online recovery's pg_basebackup). Never do this on a real network.
host    all          all   {self.subnet}      trust
host    replication  all   {self.subnet}      trust
"""

    def sshd_config(self, host):
        return f"""# sshd of lab host {host} (lab {self.n}); written by lab.up
Port 22
AddressFamily inet
ListenAddress 0.0.0.0
HostKey /opt/hatasks-lab/host/ssh_host_ed25519_key
PidFile /run/sshd.pid
UsePAM yes
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
UseDNS no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp /usr/lib/openssh/sftp-server
"""

    def build_files(self):
        """Write every host's own file tree under lab/.state/N/hosts/HOST."""
        shutil.rmtree(self.state / "hosts", ignore_errors=True)
        self._mkdir(self.state / "hosts")
        authkey = {"db": os.urandom(128), "lb": os.urandom(128)}
        pcp_md5 = hashlib.md5(self.password.encode()).hexdigest()
        for h in HOSTS:
            kind = h[:2]
            hd = self.hostdir(h)
            self._mkdir(hd)
            for d in HOST_DIRS:
                self._mkdir(self.fs(h, d))
            self.fs(h, "root").chmod(0o700)
            self.fs(h, "var/tmp").chmod(0o1777)
            self._mkdir(hd / "tmp", mode=0o1777)
            self._write(self.fs(h, "etc/hosts"), self.etc_hosts())
            self._write(hd / "sshd_config", self.sshd_config(h))
            self._write(
                hd / "ssh_host_ed25519_key",
                (self.keys / f"ssh_host_{h}_ed25519_key").read_text(),
                mode=0o600,
            )
            # /var/log skeleton
            for d, o, g, m in (
                ("apache2", "root", "adm", 0o750),
                ("corosync", "root", "root", 0o755),
                ("pacemaker", "hacluster", "haclient", 0o770),
                ("postgresql", "root", "postgres", 0o1775),
                ("pgpool", "postgres", "postgres", 0o755),
            ):
                self._mkdir(self.fs(h, f"var/log/{d}"), o, g, m)
            for f in ("wtmp", "lastlog", "btmp"):
                self._write(self.fs(h, f"var/log/{f}"), "", "root", "utmp", 0o660)
            for d in ("cib", "pengine", "blackbox", "cores"):
                self._mkdir(self.fs(h, f"var/lib/pacemaker/{d}"), "hacluster", "haclient", 0o750)
            # cluster stack
            cluster = "dbcluster" if kind == "db" else "lbcluster"
            members = DB_HOSTS if kind == "db" else LB_HOSTS
            self._write(
                self.fs(h, "etc/corosync/corosync.conf"), self.corosync_conf(cluster, members)
            )
            self._write(self.fs(h, "etc/corosync/authkey"), authkey[kind], mode=0o400)
            self._write(
                self.fs(h, "var/lib/pacemaker/cib/cib.xml"),
                self.cib_xml(cluster, members),
                "hacluster",
                "haclient",
                0o600,
            )
            # OCF providers (hostinit.sh binds heartbeat/pacemaker over the empty dirs)
            for d in ("heartbeat", "pacemaker", "lab"):
                self._mkdir(hd / "ocf-rd" / d)
            shutil.copy2(LAB_DIR / "ocf" / "pgpool", hd / "ocf-rd" / "lab" / "pgpool")
            (hd / "ocf-rd" / "lab" / "pgpool").chmod(0o755)
            # root's ssh
            self._mkdir(self.fs(h, "root/.ssh"), mode=0o700)
            self._write(self.fs(h, "root/.ssh/authorized_keys"), self.lab_pub + "\n", mode=0o600)
            # postgres' home: ssh (lab key + postgres-to-postgres key), pcppass, pgpass
            self.fs(h, "var/lib/postgresql").chmod(0o755)
            shutil.chown(self.fs(h, "var/lib/postgresql"), "postgres", "postgres")
            pgssh = self.fs(h, "var/lib/postgresql/.ssh")
            self._mkdir(pgssh, "postgres", mode=0o700)
            self._write(
                pgssh / "authorized_keys",
                f"{self.lab_pub}\n{self.pg_pub}\n",
                "postgres",
                mode=0o600,
            )
            self._write(pgssh / "known_hosts", self.known_hosts, "postgres", mode=0o644)
            self._write(
                pgssh / "id_ed25519",
                (self.keys / "postgres_id_ed25519").read_text(),
                "postgres",
                mode=0o600,
            )
            self._write(pgssh / "id_ed25519.pub", self.pg_pub + "\n", "postgres", mode=0o644)
            self._write(
                self.fs(h, "var/lib/postgresql/.pcppass"),
                f"*:*:postgres:{self.password}\n",
                "postgres",
                mode=0o600,
            )
            self._write(
                self.fs(h, "var/lib/postgresql/.pgpass"),
                f"*:*:*:postgres:{self.password}\n",
                "postgres",
                mode=0o600,
            )
            self._write(self.fs(h, "root/.pcppass"), f"*:*:postgres:{self.password}\n", mode=0o600)
            self._mkdir(self.fs(h, "var/lib/postgresql/15"), "postgres", mode=0o755)
            # pgpool
            if kind == "db":
                self._write(
                    self.fs(h, "etc/pgpool2/pgpool.conf"),
                    self.pgpool_conf(),
                    "root",
                    "postgres",
                    0o644,
                )
                self._write(
                    self.fs(h, "etc/pgpool2/pcp.conf"),
                    f"postgres:{pcp_md5}\n",
                    "root",
                    "postgres",
                    0o640,
                )
                self._write(
                    self.fs(h, "etc/pgpool2/pool_hba.conf"),
                    "# unused: enable_pool_hba = off in the lab\nhost all all 0.0.0.0/0 trust\n",
                )
            # apache: the machine's config, each host its own copy, a page naming the host
            shutil.rmtree(self.fs(h, "etc/apache2"))
            shutil.copytree("/etc/apache2", self.fs(h, "etc/apache2"), symlinks=True)
            self._mkdir(self.fs(h, "var/www/html"))
            self._write(
                self.fs(h, "var/www/html/index.html"),
                f"<html><body><h1>{h}</h1><p>hatasks lab {self.n}: served by {h}</p>"
                "</body></html>\n",
            )

    def initdb(self, host):
        """initdb inside the host as postgres (so the checkout's path needs no access for postgres),
        then the lab's settings, pg_hba.conf and recovery scripts."""
        self.hrun(
            host,
            f"{PG_BIN}/initdb -D {PGDATA} -U postgres -E UTF8 --locale=C.UTF-8 "
            "--auth-local=peer --auth-host=scram-sha-256 --no-sync >/dev/null",
            user="postgres",
            timeout=120,
        )
        self.finish_pgdata(host)

    def db_host_setup(self, host):
        self.initdb(host)
        self.pg_start(host)
        self.pg_setup(host)

    def finish_pgdata(self, host):
        data = self.fs(host, PGDATA)
        with open(data / "postgresql.conf", "a") as f:
            f.write(self.pg_settings())
        self._write(data / "pg_hba.conf", self.pg_hba(), "postgres", mode=0o600)
        for script in ("recovery_1st_stage", "recovery_2nd_stage", "pgpool_remote_start"):
            shutil.copy2(LAB_DIR / "pg" / script, data / script)
            shutil.chown(data / script, "postgres", "postgres")
            (data / script).chmod(0o700)

    # ---- build: network and hosts ---------------------------------------------------------------
    def sysctl(self, path, value, ns=None):
        if ns:
            sh(["ip", "netns", "exec", ns, "sh", "-c", f"echo {value} > /proc/sys/{path}"])
        else:
            pathlib.Path(f"/proc/sys/{path}").write_text(f"{value}\n")

    def make_bridge(self):
        sh(["ip", "link", "add", self.bridge, "type", "bridge"])
        sh(["ip", "link", "set", self.bridge, "alias", f"{MARK} {self.n} {ROOT}"])
        self.sysctl(f"net/ipv6/conf/{self.bridge}/disable_ipv6", 1)
        sh(["ip", "addr", "add", f"{self.gw}/24", "dev", self.bridge])
        sh(["ip", "link", "set", self.bridge, "up"])

    def make_netns(self, host):
        ns = self.ns(host)
        sh(["ip", "netns", "add", ns])
        self.sysctl("net/ipv6/conf/all/disable_ipv6", 1, ns)
        self.sysctl("net/ipv6/conf/default/disable_ipv6", 1, ns)
        self.sysctl("net/ipv4/ip_forward", 0, ns)
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])

    def make_link(self, host):
        """The host's 'cable': veth hl{N}v-HOST (bridge side) <-> eth0 (host side)."""
        ns, veth = self.ns(host), self.veth(host)
        sh(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        self.sysctl(f"net/ipv6/conf/{veth}/disable_ipv6", 1)
        self.sysctl("net/ipv6/conf/eth0/disable_ipv6", 1, ns)
        sh(["ip", "link", "set", veth, "master", self.bridge])
        sh(["ip", "link", "set", veth, "up"])
        sh(["ip", "-n", ns, "addr", "add", f"{self.ip(host)}/24", "dev", "eth0"])
        sh(["ip", "-n", ns, "link", "set", "eth0", "up"])

    def start_init(self, host, boot=False):
        """Power on: PID 1 of the host in its own namespaces (detached from this process)."""
        for mountpoint in ("/opt/hatasks-lab/bin", "/opt/hatasks-lab/host"):
            pathlib.Path(mountpoint).mkdir(parents=True, exist_ok=True)
        log = open(self.hostdir(host) / "init.log", "a")
        subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns(host),
                "unshare",
                "--uts",
                "--ipc",
                "--mount",
                "--pid",
                "--fork",
                "--mount-proc",
                "--propagation",
                "private",
                str(LAB_DIR / "hostinit.sh"),
                host,
                str(self.hostdir(host)),
                str(LAB_DIR),
                "1" if boot else "0",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd="/",
            env={"PATH": HOST_PATH, "LANG": "C.UTF-8"},
        )
        log.close()

    def sshd_ready(self, host):
        try:
            with socket.create_connection((self.ip(host), 22), timeout=1) as s:
                return s.recv(4).startswith(b"SSH")
        except OSError:
            return False

    def wait_host(self, host, timeout=20):
        wait_until(
            f"{host} to boot (PID 1 + sshd)",
            lambda: self.pid1(host) and self.sshd_ready(host),
            timeout,
            0.1,
        )

    def booted(self, host):
        return (
            self.hrun(host, "test -e /run/hatasks-lab/booted", check=False, timeout=10).returncode
            == 0
        )

    def reboot(self, host):
        """An orderly reboot of one host: hostinit.sh stops the stack and PostgreSQL, kills
        the rest,
        clears volatile state, boots again (PostgreSQL + stack start at boot). Waits for the boot.
        """
        self.check_host(host)
        if self.pid1(host) is None:
            raise StateError(f"{host} is powered off (heal it to power it on)")
        wait_until(f"{host} to finish its current boot", lambda: self.booted(host), 60)
        self.hrun(host, "kill -USR1 1")
        self.progress(f"{host}: rebooting (stack stop, PostgreSQL stop, boot)")
        wait_until(f"{host} to shut down", lambda: not self.booted(host), 240, 0.2)
        wait_until(f"{host} to boot", lambda: self.booted(host) and self.sshd_ready(host), 120, 0.2)
        self.progress(f"{host}: rebooted (PostgreSQL and the cluster stack started at boot)")

    # ---- build: services ----------------------------------------------------------------------
    def pg_start(self, host):
        self.hrun(
            host,
            f"rm -f {PGDATA}/postmaster.pid; {PG_BIN}/pg_ctl -D {PGDATA} -w -t 60 "
            f"-l /var/log/postgresql/pg_ctl.log start >/dev/null",
            user="postgres",
            timeout=90,
        )

    def pg_setup(self, host):
        sql = (
            f"ALTER ROLE postgres PASSWORD '{self.password}';\n"
            "CREATE EXTENSION IF NOT EXISTS pgpool_recovery;\n"
        )
        self.hrun(host, "psql -X -q -v ON_ERROR_STOP=1 -d template1", user="postgres", input=sql)

    def stack_start(self, host):
        self.hrun(host, "/opt/hatasks-lab/bin/stack start", timeout=90)

    def clusters_converged(self):
        for hosts, group in ((DB_HOSTS, ("db-vip", "pgpool")), (LB_HOSTS, ("lb-vip", "apache"))):
            mon = self.crm_mon(hosts[0])
            if any(mon["nodes"].get(h) != "online" for h in hosts):
                return False
            where = [mon["resources"].get(r) or [] for r in group]
            if len(where[0]) != 1 or any(w != where[0] for w in where):
                return False
        return True

    def app_sql(self):
        return """
CREATE TABLE customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL UNIQUE,
    city text NOT NULL,
    created_at timestamp NOT NULL
);
CREATE TABLE orders (
    id integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    ordered_at timestamp NOT NULL,
    status text NOT NULL
);
CREATE INDEX orders_customer_id ON orders (customer_id);
CREATE TABLE order_lines (
    order_id integer NOT NULL REFERENCES orders (id),
    line_no integer NOT NULL,
    product text NOT NULL,
    quantity integer NOT NULL,
    unit_price numeric(10, 2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
-- deterministic values only: pgpool's native replication sends the same SQL to both backends
INSERT INTO customers
SELECT i, 'customer ' || i, 'customer' || i || '@example.invalid',
       (ARRAY['Tokyo', 'Osaka', 'Nagoya', 'Sapporo', 'Fukuoka'])[1 + i % 5],
       timestamp '2026-01-01 09:00' + i * interval '1 hour'
FROM generate_series(1, 1000) AS i;
INSERT INTO orders
SELECT i, 1 + (i * 7) % 1000, timestamp '2026-02-01 09:00' + i * interval '10 minutes',
       (ARRAY['new', 'paid', 'shipped', 'closed'])[1 + i % 4]
FROM generate_series(1, 3000) AS i;
INSERT INTO order_lines
SELECT o, l, 'product ' || ((o * 3 + l) % 200), 1 + (o + l) % 5,
       1 + ((o * 13 + l * 7) % 10000) / 100.0
FROM generate_series(1, 3000) AS o, generate_series(1, 3) AS l;
"""

    def counts(self, host):
        q = (
            "SELECT (SELECT count(*) FROM customers) || ',' || "
            "(SELECT count(*) FROM orders) || ',' || "
            "(SELECT count(*) FROM order_lines);"
        )
        return self.psql(self.ip(host), 5432, q, db=APP_DB).stdout.strip()

    def load_app_db(self):
        self.psql(self.db_vip, 9999, f'CREATE DATABASE "{APP_DB}";')
        self.psql(self.db_vip, 9999, self.app_sql(), db=APP_DB, timeout=120)
        c1, c2 = self.counts("db01"), self.counts("db02")
        if c1 != c2 or c1 != "1000,3000,9000":
            raise LabError(f"{APP_DB} differs between backends: db01={c1} db02={c2}")
        return c1

    # ---- inventory and ssh config ----------------------------------------------------------------
    def ssh_config_text(self):
        lines = [
            f"# ssh aliases of lab instance {self.n}; written by `inv lab.up`.",
            "# Use: ssh -F THIS_FILE db01",
            "",
        ]
        for h in HOSTS:
            lines += [f"Host {h}", f"    HostName {self.ip(h)}", ""]
        lines += [
            "Host db-vip",
            f"    HostName {self.db_vip}",
            "",
            "Host lb-vip",
            f"    HostName {self.lb_vip}",
            "",
        ]
        lines += [
            "Host db01 db02 lb01 lb02 db-vip lb-vip",
            "    User root",
            "    Port 22",
            f"    IdentityFile {self.keys / 'id_ed25519'}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {self.keys / 'known_hosts'}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    BatchMode yes",
            "    ConnectTimeout 5",
            "    LogLevel ERROR",
            "",
        ]
        return "\n".join(lines)

    def inventory_text(self):
        """The top-level hosts.ini with this instance's addresses and paths (relative to
        its own folder)."""
        text = (ROOT / "hosts.ini").read_text()
        replacements = [
            ("10.231.0.", f"{self.net}."),
            ("ssh_config=lab/ssh_config", "ssh_config=ssh_config"),
            ("pgpass=lab/.state/0/pgpass", "pgpass=pgpass"),
            ("power_check=lab/bin/power-check {host}", "power_check=bin/power-check {host}"),
        ]
        for old, new in replacements:
            if old not in text:
                raise LabError(
                    f"hosts.ini no longer contains {old!r}: update lab/core.py inventory_text"
                )
            text = text.replace(old, new)
        header = (
            f"# lab instance {self.n}: generated by `inv lab.up` from the top-level hosts.ini\n"
            f"# (addresses 10.231.{self.n}.x; relative paths are relative to this folder)\n"
        )
        return header + text

    def write_client_files(self):
        ssh_config = self.ssh_config_text()
        self._write(self.state / "ssh_config", ssh_config)
        if self.n == 0:
            self._write(LAB_DIR / "ssh_config", ssh_config)
        self._write(self.state / "hosts.ini", self.inventory_text())
        self._mkdir(self.state / "bin")
        self._write(
            self.state / "bin" / "power-check",
            f"#!/bin/sh\n# power check of lab instance {self.n}\n"
            f"exec {LAB_DIR / 'bin' / 'power-check'} --lab {self.n} \"$@\"\n",
            mode=0o755,
        )

    # ---- up -------------------------------------------------------------------------------------
    def up(self, force=False):
        self.preflight()
        if self.has_objects():
            live = self.live_hosts()
            owner = self.owner()
            if live and owner != str(ROOT) and not force:
                who = f"checkout {owner}" if owner else "an unknown owner (no marker)"
                raise HaError(
                    f"lab {self.n} is live and belongs to {who}; use --force to replace it",
                    HaError.REFUSED,
                )
            if live and owner == str(ROOT):
                built = self.read_json("running.json", {}).get("code")
                problems = self.problems()
                if built != code_version():
                    problems.append("the lab's code changed since this lab was built")
                if not problems:
                    self.write_client_files()
                    self.progress("already up and healthy")
                    return "already"
                self.progress("up but not healthy, rebuilding: " + "; ".join(problems))
            self.down(force=True)
        self.clear_run_state()
        self.check_subnet_free()
        self.progress(f"starting (subnet {self.subnet}, bridge {self.bridge})")
        self.make_keys()
        self.build_files()
        self.progress("host file trees written")
        self.make_bridge()
        for h in HOSTS:
            self.make_netns(h)
            self.make_link(h)
        for h in HOSTS:
            self.start_init(h)
        self.write_json(
            "running.json",
            {
                "instance": self.n,
                "checkout": str(ROOT),
                "started": datetime.datetime.now().isoformat(timespec="seconds"),
                "boot_services": False,
                "code": code_version(),
            },
        )
        for h in HOSTS:
            self.wait_host(h)
        self.progress("4 hosts booted (sshd answering)")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            lb = [pool.submit(self.stack_start, h) for h in LB_HOSTS]
            list(pool.map(self.db_host_setup, DB_HOSTS))
            self.progress("PostgreSQL 15 initialised and running on db01, db02")
            list(pool.map(self.stack_start, DB_HOSTS))
            for f in lb:
                f.result()
        self.progress("corosync + pacemaker started on 4 hosts")
        wait_until(
            "both clusters to form (nodes online, groups started)", self.clusters_converged, 90
        )
        self.progress("clusters formed: grp-pgpool and grp-apache started")
        wait_until(
            "pgpool with both backends up",
            lambda: [s for (_, _, s) in self.pool_nodes()] == ["up", "up"],
            60,
        )
        counts = self.load_app_db()
        self.progress(
            f"{APP_DB} created through pgpool; both backends hold "
            f"customers,orders,order_lines = {counts}"
        )
        wait_until("the LB VIP to serve a page", lambda: "lb0" in self.http_lb(), 30)
        self.write_client_files()
        state = self.read_json("running.json", {})
        state["boot_services"] = True
        self.write_json("running.json", state)
        problems = self.problems()
        if problems:
            raise LabError(
                "lab came up but is not healthy: " + "; ".join(problems), HaError.NOT_CONVERGED
            )
        self.progress(
            f"up and healthy in {time.monotonic() - self.t0:.1f}s "
            f"(ssh -F {self.state / 'ssh_config'} db01)"
        )
        return "up"

    # ---- faults -------------------------------------------------------------------------
    def record_fault(self, host, kind):
        faults = self.faults()
        faults.setdefault(host, [])
        if not any(f["kind"] == kind for f in faults[host]):
            faults[host].append(
                {"kind": kind, "at": datetime.datetime.now().isoformat(timespec="seconds")}
            )
        self.write_json("faults.json", faults)

    def backup(self, host, path):
        dst = self.hostdir(host) / "fault-backup" / path.lstrip("/").replace("/", "__")
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.fs(host, path), dst)
        return dst

    def restore(self, host, path):
        src = self.hostdir(host) / "fault-backup" / path.lstrip("/").replace("/", "__")
        if src.exists():
            shutil.copy2(src, self.fs(host, path))
            src.unlink()
            return True
        return False

    # match the executable's name (comm is truncated to 15 chars and scripts share names)
    KILL_BY_NAME = (
        "for d in /proc/[0-9]*; do e=$(readlink $d/exe 2>/dev/null) || continue; "
        'case " $NAMES " in *" ${e##*/} "*) kill -9 ${d#/proc/} 2>/dev/null;; esac; done'
    )

    def kill_in_host(self, host, names):
        """SIGKILL every process of these names inside the host's own PID namespace."""
        self.hrun(host, f"NAMES='{' '.join(names)}'; {self.KILL_BY_NAME}", check=False)

    def fault(self, host, kind):
        self.check_host(host)
        if kind not in FAULT_KINDS:
            raise UsageError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
        if kind in ("pgpool", "postgres") and host not in DB_HOSTS:
            raise UsageError(f"fault {kind} applies to DB hosts only ({', '.join(DB_HOSTS)})")
        if kind == "httpd" and host not in LB_HOSTS:
            raise UsageError(f"fault httpd applies to LB hosts only ({', '.join(LB_HOSTS)})")
        if not self.has_objects():
            raise StateError(f"lab {self.n} is not up")
        if kind != "power" and self.pid1(host) is None:
            raise StateError(f"{host} is powered off; heal it first")
        if kind == "power":
            pid = self.pid1(host)
            if pid:
                os.kill(pid, signal.SIGKILL)
                self._drain(host)
            if self.link_state(host) != "absent":
                sh(["ip", "link", "del", self.veth(host)])
            what = "powered off (all its processes killed, its NIC and addresses gone)"
        elif kind == "network":
            sh(["ip", "link", "set", self.veth(host), "down"])
            what = f"link down ({self.veth(host)}: cable pulled)"
        elif kind == "heartbeat":
            self.kill_in_host(
                host,
                [
                    "corosync",
                    "pacemakerd",
                    "pacemaker-based",
                    "pacemaker-fenced",
                    "pacemaker-execd",
                    "pacemaker-attrd",
                    "pacemaker-schedulerd",
                    "pacemaker-controld",
                ],
            )
            what = "corosync and pacemaker killed (SIGKILL)"
        elif kind == "pgpool":
            self.backup(host, "/etc/pgpool2/pgpool.conf")
            with open(self.fs(host, "/etc/pgpool2/pgpool.conf"), "a") as f:
                f.write(
                    "\n# broken by lab.fault (pgpool start failure)\n"
                    "port = this is broken by lab fault\n"
                )
            self.kill_in_host(host, ["pgpool"])
            what = "pgpool.conf broken (invalid port) and pgpool killed"
        elif kind == "postgres":
            self.hrun(
                host,
                f'pid=$(head -n 1 {PGDATA}/postmaster.pid 2>/dev/null) && kill -9 "$pid"',
                check=False,
            )
            what = "postmaster killed (SIGKILL)"
        else:  # httpd
            self.backup(host, "/etc/apache2/apache2.conf")
            with open(self.fs(host, "/etc/apache2/apache2.conf"), "a") as f:
                f.write(
                    "\n# broken by lab.fault (httpd start failure)\n"
                    "ThisIsNotADirective broken-by-lab-fault\n"
                )
            self.kill_in_host(host, ["apache2"])
            what = "apache2.conf broken (unknown directive) and apache killed"
        self.record_fault(host, kind)
        self.progress(f"fault {kind} on {host}: {what}")

    def heal(self, host):
        """Undo what lab.fault did to the host (power on, cable, config). Does not repair
        the cluster:
        starting the stack or PostgreSQL after heartbeat/postgres faults is the operator's job."""
        self.check_host(host)
        if not self.has_objects():
            raise StateError(f"lab {self.n} is not up")
        faults = self.faults()
        kinds = [f["kind"] for f in faults.get(host, [])]
        done = []
        if self.pid1(host) is None:
            if self.link_state(host) == "absent":
                self.make_link(host)
            boot = self.read_json("running.json", {}).get("boot_services", True)
            self.start_init(host, boot=boot)
            self.wait_host(host)
            wait_until(f"{host} to finish booting", lambda: self.booted(host), 120, 0.2)
            done.append(
                "powered on (boot: PostgreSQL + cluster stack start)" if boot else "powered on"
            )
        if self.link_state(host) == "absent":
            self.make_link(host)
            done.append("NIC recreated")
        if self.link_state(host) == "down":
            sh(["ip", "link", "set", self.veth(host), "up"])
            done.append("link up")
        if self.restore(host, "/etc/pgpool2/pgpool.conf"):
            done.append("pgpool.conf restored")
        if self.restore(host, "/etc/apache2/apache2.conf"):
            done.append("apache2.conf restored")
        for k in kinds:
            if k == "heartbeat":
                done.append("heartbeat: nothing to undo (start the stack: stack_start)")
            elif k == "postgres":
                done.append("postgres: nothing to undo (start PostgreSQL: pg_ctl start)")
        faults.pop(host, None)
        self.write_json("faults.json", faults)
        self.progress(f"heal {host}: " + ("; ".join(done) if done else "nothing to undo"))
        return done

    # ---- status ----------------------------------------------------------------------------------
    def status(self):
        """A dict describing the instance (hosts, clusters, pgpool)."""
        faults = self.faults()
        live = self.live_hosts()
        if not self.has_objects():
            state = "down"
        elif not live:
            state = "stale (namespaces/links left, no process: lab.up or lab.down clears it)"
        elif len(live) < len(HOSTS):
            state = "up, some hosts powered off"
        else:
            state = "up"
        info = {
            "instance": self.n,
            "state": state,
            "subnet": self.subnet,
            "owner": self.owner(),
            "state_dir": str(self.state),
            "hosts": {},
            "clusters": {},
            "pgpool": None,
        }
        for h in HOSTS:
            pid = self.pid1(h)
            info["hosts"][h] = {
                "ip": self.ip(h),
                "power": "on" if pid else "off",
                "pid1": pid,
                "link": self.link_state(h) if self.netns_present() else "absent",
                "faults": [f["kind"] for f in faults.get(h, [])],
            }
        for name, hosts in (("db", DB_HOSTS), ("lb", LB_HOSTS)):
            for h in hosts:
                if info["hosts"][h]["power"] != "on":
                    continue
                try:
                    info["clusters"][name] = dict(self.crm_mon(h), seen_from=h)
                    break
                except LabError as exc:
                    info["clusters"][name] = {"error": exc.message}
        if self.netns_present():
            try:
                info["pgpool"] = self.pool_nodes()
            except LabError as exc:
                info["pgpool"] = exc.message
        return info
