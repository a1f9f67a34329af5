"""The chaos rehearsal's eyes and hands on the operator side: the workload writing through the
DB VIP, `inv` run as an operator runs it, and the lab's own view of the clusters (independent
of hatasks: crm_mon through the lab, psql to each backend, the LB page)."""

import fcntl
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import psycopg2

from .base import APP_DB, DB_HOSTS, LB_HOSTS, ROOT, LabError

INV = str(pathlib.Path(sys.executable).parent / "inv")
TABLE = "chaos_writes"


# --------------------------------------------------------------------------- the workload


class Workload(threading.Thread):
    """Writes one row per write through the DB VIP (pgpool), each with a unique id; an id is
    appended to the acknowledged file only after its COMMIT returned. pause()/resume() hold the
    writes while the invariants are read."""

    def __init__(self, lab, acked_path, prefix, interval=0.2):
        super().__init__(daemon=True)
        self.lab = lab
        self.acked_path = pathlib.Path(acked_path)
        self.prefix = prefix
        self.interval = interval
        self.n = 0
        self.acked = []
        self.errors = 0
        self.stop_ev = threading.Event()
        self.run_ev = threading.Event()
        self.run_ev.set()
        self.idle = threading.Event()
        self.conn = None

    def connect(self):
        return psycopg2.connect(host=self.lab.db_vip, port=9999, user="postgres", dbname=APP_DB,
                                passfile=str(self.lab.pgpass), connect_timeout=3,
                                options="-c statement_timeout=10000")

    def ensure_table(self):
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id text PRIMARY KEY, "
                            "at timestamptz NOT NULL DEFAULT now())")
        finally:
            conn.close()

    def write_one(self):
        self.n += 1
        wid = f"{self.prefix}-{self.n}"
        try:
            if self.conn is None:
                self.conn = self.connect()
                self.conn.autocommit = True
            with self.conn.cursor() as cur:
                cur.execute(f"INSERT INTO {TABLE} (id) VALUES (%s)", (wid,))
        except psycopg2.Error:
            self.errors += 1
            try:
                if self.conn is not None:
                    self.conn.close()
            except psycopg2.Error:
                pass
            self.conn = None
            time.sleep(0.5)
            return
        self.acked.append(wid)
        with open(self.acked_path, "a") as f:
            f.write(wid + "\n")
            f.flush()
            os.fsync(f.fileno())

    def run(self):
        while not self.stop_ev.is_set():
            if not self.run_ev.is_set():
                self.idle.set()
                self.run_ev.wait(0.5)
                continue
            self.idle.clear()
            self.write_one()
            time.sleep(self.interval)
        self.idle.set()

    def pause(self):
        self.run_ev.clear()
        self.idle.wait(30)

    def resume(self):
        self.run_ev.set()

    def stop(self):
        self.stop_ev.set()
        self.run_ev.set()
        self.join(30)


# --------------------------------------------------------------------------- inv


class Operator:
    """Runs `inv ARGS` as an operator does: the instance's inventory, the run's state dir."""

    def __init__(self, lab, state_dir, log):
        self.lab = lab
        self.state_dir = pathlib.Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log = log
        self.env = dict(os.environ)
        self.env["HATASKS_LAB"] = str(lab.n)
        if lab.n:
            self.env["INVOKE_HATASKS_INVENTORY"] = str(lab.state / "hosts.ini")
        self.env["INVOKE_HATASKS_STATE_DIR"] = str(self.state_dir)
        self.current = None

    def start(self, args):
        """Start `inv ARGS` in its own session (a terminal's job); its output goes to files, so
        that children left running by a SIGKILL do not hold a pipe open."""
        self.count = getattr(self, "count", 0) + 1
        base = self.state_dir.parent / "out" / f"{self.state_dir.name}-{self.count:04d}-{args[0]}"
        base.parent.mkdir(exist_ok=True)
        self.log(f"$ inv {' '.join(args)}   (output {base}.out/.err)")
        with open(f"{base}.out", "w") as o, open(f"{base}.err", "w") as e:
            proc = subprocess.Popen([INV, *args], cwd=ROOT, env=self.env, text=True,
                                    stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                                    start_new_session=True)
        proc.files = base
        self.current = proc
        return proc

    def finish(self, proc, t0, timeout=1200):
        """Wait for it: (exit code, stdout, stderr, seconds)."""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.log(f"  [chaos: killed after {timeout}s]")
        elapsed = time.monotonic() - t0
        self.current = None
        out = pathlib.Path(f"{proc.files}.out").read_text(errors="replace")
        err = pathlib.Path(f"{proc.files}.err").read_text(errors="replace")
        both = (out + err).strip().splitlines()
        self.log(f"  -> exit {proc.returncode} in {elapsed:.1f}s"
                 + "".join(f"\n  | {line}" for line in both[-12:]))
        return proc.returncode, out, err, elapsed

    def interrupt_current(self):
        """The rehearsal itself was interrupted: Ctrl-C to the task it is running, then wait."""
        proc = self.current
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def run(self, *args, timeout=1200):
        """(exit code, stdout + stderr, seconds)."""
        t0 = time.monotonic()
        rc, out, err, elapsed = self.finish(self.start(list(args)), t0, timeout)
        return rc, out + err, elapsed

    def json(self, *args):
        """(exit code, the JSON it printed on stdout or None, stdout + stderr)."""
        t0 = time.monotonic()
        rc, out, err, _ = self.finish(self.start(list(args)), t0, 300)
        try:
            return rc, json.loads(out), out + err
        except ValueError:
            return rc, None, out + err

    # ---- the journal and the lock of the run's state dir -----------------------------------
    def records(self, pid=None):
        path = self.state_dir / "journal.jsonl"
        out = []
        if not path.exists():
            return out
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if pid is None or rec.get("pid") == pid:
                out.append(rec)
        return out

    def lock(self, cluster="db"):
        """None when free; else {"pid", "action", "alive", "holders"}."""
        path = self.state_dir / f"lock.{cluster}"
        if not path.exists():
            return None
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
                return None
            except OSError:
                pass
            try:
                body = json.loads(f.read() or "{}")
            except ValueError:
                body = {}
        pid = body.get("pid")
        alive = bool(pid) and pathlib.Path(f"/proc/{pid}").exists()
        return {"pid": pid, "action": body.get("action"), "alive": alive,
                "holders": fd_holders(path)}


def fd_holders(path):
    """The processes that have `path` open (evidence for a lock held after its owner died)."""
    out = []
    target = str(path)
    for d in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            for fd in (d / "fd").iterdir():
                if os.readlink(fd) == target:
                    cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
                    out.append(f"{d.name}:{cmd}")
                    break
        except OSError:
            continue
    return out


# --------------------------------------------------------------------------- the lab's view


class Truth:
    """What the lab itself sees, without hatasks."""

    def __init__(self, lab):
        self.lab = lab

    def mon(self, hosts):
        for h in hosts:
            if self.lab.pid1(h) is None or self.lab.link_state(h) != "up":
                continue
            try:
                mon = self.lab.crm_mon(h)
            except LabError:
                continue
            if mon["nodes"]:  # a node whose stack is down answers with no node at all
                return h, mon
        return None, None

    def active(self, cluster="db"):
        hosts, res = (DB_HOSTS, "pgpool") if cluster == "db" else (LB_HOSTS, "apache")
        _, mon = self.mon(hosts)
        where = (mon or {}).get("resources", {}).get(res) or []
        return where[0] if len(where) == 1 else None

    def pool(self):
        try:
            return self.lab.pool_nodes()
        except LabError:
            return None

    def ids_on(self, host, prefix, ports=(5432, 1234)):
        """The ids on a backend, read directly (also on the resync's maintenance port, where
        an interrupted resync may leave PostgreSQL); None when it cannot be read."""
        for port in ports:
            proc = self.lab.psql(self.lab.ip(host), port,
                                 f"SELECT id FROM {TABLE} WHERE id LIKE '{prefix}-%';",
                                 db=APP_DB, check=False, timeout=30)
            if proc.returncode == 0:
                return set(proc.stdout.split())
        return None

    def crm_attr(self, host, name):
        proc = self.lab.hrun(host, f"crm_attribute -t crm_config -n {name} -q -G 2>/dev/null",
                             check=False, timeout=20)
        return proc.stdout.strip()

    def cli_constraints(self, host):
        proc = self.lab.hrun(host, "cibadmin -Q -o constraints", check=False, timeout=20)
        return re.findall(r'id="(cli-(?:ban|prefer)-[^"]+)"', proc.stdout)

    def problems(self, cluster):
        """The lab's health of one cluster ([] healthy), stricter than lab.problems: also
        maintenance mode and move/ban constraints left behind."""
        hosts = DB_HOSTS if cluster == "db" else LB_HOSTS
        group = ("db-vip", "pgpool") if cluster == "db" else ("lb-vip", "apache")
        out = []
        off = [h for h in hosts if self.lab.pid1(h) is None]
        if off:
            out.append(f"powered off: {off}")
        seen_from, mon = self.mon(hosts)
        if mon is None:
            return out + [f"no crm_mon answer in the {cluster} cluster"]
        for h in hosts:
            if mon["nodes"].get(h) != "online":
                out.append(f"{h} is {mon['nodes'].get(h, 'unknown')}")
            elif h != seen_from and not self.own_stack_answers(h):
                # a peer shows a node online until the token timeout: its own crm_mon decides
                out.append(f"{h} is online for {seen_from}, but crm_mon fails on {h} itself")
        placed = {tuple(mon["resources"].get(r, [])) for r in group}
        if len(placed) != 1 or len(next(iter(placed))) != 1:
            out.append("group not started on one node: "
                       + ", ".join(f"{r}={mon['resources'].get(r)}" for r in group))
        if mon["failures"]:
            out.append(f"failed actions: {mon['failures']}")
        if self.crm_attr(seen_from, "maintenance-mode") == "true":
            out.append("cluster maintenance-mode=true")
        left = self.cli_constraints(seen_from)
        if left:
            out.append(f"constraints left: {left}")
        if cluster == "db":
            pool = self.pool()
            if pool is None:
                out.append("pgpool does not answer through the DB VIP")
            elif [s for _, _, s in pool] != ["up", "up"]:
                out.append(f"pgpool backends not both up: {pool}")
        else:
            if self.lb_page() is None:
                out.append("the LB VIP does not answer")
        return out

    def own_stack_answers(self, host):
        """crm_mon on HOST lists nodes (its cluster stack runs); True when HOST cannot be
        reached (then only a peer can tell)."""
        if self.lab.pid1(host) is None or self.lab.link_state(host) != "up":
            return True
        try:
            return bool(self.lab.crm_mon(host)["nodes"])
        except LabError:
            return False

    def wait_healthy(self, cluster, grace):
        """problems(cluster) after waiting up to `grace` seconds for them to clear."""
        deadline = time.monotonic() + grace
        while True:
            p = self.problems(cluster)
            if not p or time.monotonic() > deadline:
                return p
            time.sleep(2)

    def nodes(self, cluster="db"):
        _, mon = self.mon(DB_HOSTS if cluster == "db" else LB_HOSTS)
        return dict((mon or {}).get("nodes", {}))

    def lb_page(self):
        try:
            page = self.lab.http_lb()
        except OSError:
            return None
        m = re.search(r"<h1>(lb0\d)</h1>", page)
        return m.group(1) if m else "?"

    def apache_hosts(self):
        out = set()
        for h in LB_HOSTS:
            if self.lab.pid1(h) is None:
                continue
            proc = self.lab.hrun(h, "pgrep -x apache2 >/dev/null", check=False, timeout=10)
            if proc.returncode == 0:
                out.add(h)
        return out

    def grep_ids(self, host, path, ids):
        """The ids found in a file or directory on a host (a salvage file, a kept data dir)."""
        tmp = self.lab.fs(host, "var/tmp/chaos-ids")
        try:
            tmp.write_text("\n".join(sorted(ids)) + "\n")
        except OSError:
            return set()
        proc = self.lab.hrun(host, f"grep -r -a -o -h -w -F -f /var/tmp/chaos-ids '{path}' "
                             "2>/dev/null | sort -u", check=False, timeout=120)
        return set(proc.stdout.split()) & set(ids)
