"""The lab's ground floor: instance names and constants, the command runner, waiting, the state
directory and the file writers every other part of the lab builds on.

The lab: four hosts (db01 db02 lb01 lb02) on one machine, each a set of namespaces.

Each host is a network namespace ``hl{N}-HOST`` plus its own UTS, IPC, mount and PID namespaces,
whose PID 1 is ``lab/hostinit.sh``. The hosts sit on a private bridge ``hlbr{N}`` (10.231.N.1/24)
through veth pairs ``hl{N}v-HOST`` (the host side is ``eth0``). No default route, no IPv6 on lab
links, ip_forward must be 0. Instance N is chosen with HATASKS_LAB=N, so several labs can run at
once. All state of instance N (per-host file trees, keys, ssh_config, hosts.ini, pgpass, the fault
record) lives in ``lab/.state/N``.

Everything here talks to the hosts with ``ip netns``/``nsenter`` and subprocess: the lab does not
depend on hatasks' own inventory or remote modules (it is what they are tested on).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import time

from hatasks.errors import HaError, UsageError

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
    "var/lib/hatasks",
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
    """A digest of the lab's code (scripts, agent, the modules the Lab class is made of): a live
    lab built from other code is rebuilt by lab.up instead of being reported healthy."""
    digest = hashlib.sha256()
    # tasks.py only parses the command line: editing it does not change what a lab is
    files = [p for p in sorted(LAB_DIR.glob("*.py")) if p.name != "tasks.py"]
    files += [LAB_DIR / "hostinit.sh", LAB_DIR / "ocf" / "pgpool"]
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


class LabBase:
    """Lab instance N: its names, addresses and paths, its state files, and file writing."""

    # ---- names and paths -----------------------------------------------------------------
    def __init__(self, n=None, out=print, dry=False):
        self.n = instance_from_env() if n is None else int(n)
        if not 0 <= self.n <= 255:
            raise UsageError("lab instance must be 0..255")
        self.out = out
        # `inv --dry`: every operation checks and reads as usual, says what it would change,
        # and changes nothing (no command that acts, no file written)
        self.dry = dry
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
        if self.dry:  # changes nothing, so collides with nothing (and writes no lock file)
            yield
            return
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.state / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.progress("another lab operation on this instance is running: waiting for it")
                fcntl.flock(f, fcntl.LOCK_EX)
            yield

    # ---- state files ---------------------------------------------------------------------
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

    def clear_run_state(self):
        for name in ("running.json", "faults.json"):
            try:
                (self.state / name).unlink()
            except FileNotFoundError:
                pass

    # ---- files on the machine (owner and mode set, as the hosts' daemons check them) -----
    def make_dir(self, path, owner="root", group=None, mode=0o755):
        path.mkdir(parents=True, exist_ok=True)
        shutil.chown(path, owner, group or owner)
        path.chmod(mode)

    def write_file(self, path, text, owner="root", group=None, mode=0o644):
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        shutil.chown(path, owner, group or owner)
        path.chmod(mode)
