"""lab.fault and lab.heal: inject one runbook failure into a host (power, network, heartbeat,
pgpool, postgres, httpd), record it in faults.json, and undo what was injected. Heal never repairs
the cluster: repairing it is the job of the runbook tasks under test."""

import datetime
import os
import shutil
import signal

from hatasks.errors import StateError, UsageError

from .base import DB_HOSTS, FAULT_KINDS, LB_HOSTS, PGDATA, sh, wait_until
from .hosts import LabHosts

# the cluster stack's daemons: killing them all is a node whose heartbeat stopped
STACK_PROCESSES = (
    "corosync",
    "pacemakerd",
    "pacemaker-based",
    "pacemaker-fenced",
    "pacemaker-execd",
    "pacemaker-attrd",
    "pacemaker-schedulerd",
    "pacemaker-controld",
)


class LabFaults(LabHosts):
    """Fault injection and healing on lab instance N."""

    # ---- the fault record and config backups ---------------------------------------------
    def record_fault(self, host, kind):
        faults = self.faults()
        faults.setdefault(host, [])
        if not any(f["kind"] == kind for f in faults[host]):
            faults[host].append(
                {"kind": kind, "at": datetime.datetime.now().isoformat(timespec="seconds")}
            )
        self.write_json("faults.json", faults)

    def backup_path(self, host, path):
        return self.hostdir(host) / "fault-backup" / path.lstrip("/").replace("/", "__")

    def backup(self, host, path):
        dst = self.backup_path(host, path)
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.fs(host, path), dst)
        return dst

    def restore(self, host, path):
        src = self.backup_path(host, path)
        if src.exists():
            shutil.copy2(src, self.fs(host, path))
            src.unlink()
            return True
        return False

    # ---- killing inside a host -----------------------------------------------------------
    # match the executable's name (comm is truncated to 15 chars and scripts share names)
    KILL_BY_NAME = (
        "for d in /proc/[0-9]*; do e=$(readlink $d/exe 2>/dev/null) || continue; "
        'case " $NAMES " in *" ${e##*/} "*) kill -9 ${d#/proc/} 2>/dev/null;; esac; done'
    )

    def kill_in_host(self, host, names):
        """SIGKILL every process of these names inside the host's own PID namespace."""
        self.hrun(host, f"NAMES='{' '.join(names)}'; {self.KILL_BY_NAME}", check=False)

    # ---- inject and undo -----------------------------------------------------------------
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
        inject, what = self.injections(host)[kind]
        if self.dry:
            self.progress(f"[dry] would inject fault {kind} on {host}: {what}")
            return
        inject()
        self.record_fault(host, kind)
        self.progress(f"fault {kind} on {host}: {what}")

    def injections(self, host):
        """Each fault kind: (the function that injects it into `host`, what it does), so that
        --dry describes exactly what a real run would do."""
        veth = self.veth(host)
        return {
            "power": (
                lambda: self.power_off(host),
                "powered off (all its processes killed, its NIC and addresses gone)",
            ),
            "network": (
                lambda: sh(["ip", "link", "set", veth, "down"]),
                f"link down ({veth}: cable pulled)",
            ),
            "heartbeat": (
                lambda: self.kill_in_host(host, STACK_PROCESSES),
                "corosync and pacemaker killed (SIGKILL)",
            ),
            "pgpool": (
                lambda: self.break_config(
                    host,
                    "/etc/pgpool2/pgpool.conf",
                    "\n# broken by lab.fault (pgpool start failure)\n"
                    "port = this is broken by lab fault\n",
                    "pgpool",
                ),
                "pgpool.conf broken (invalid port) and pgpool killed",
            ),
            "postgres": (
                lambda: self.hrun(
                    host,
                    f'pid=$(head -n 1 {PGDATA}/postmaster.pid 2>/dev/null) && kill -9 "$pid"',
                    check=False,
                ),
                "postmaster killed (SIGKILL)",
            ),
            "httpd": (
                lambda: self.break_config(
                    host,
                    "/etc/apache2/apache2.conf",
                    "\n# broken by lab.fault (httpd start failure)\n"
                    "ThisIsNotADirective broken-by-lab-fault\n",
                    "apache2",
                ),
                "apache2.conf broken (unknown directive) and apache killed",
            ),
        }

    def power_off(self, host):
        pid = self.pid1(host)
        if pid:
            os.kill(pid, signal.SIGKILL)
            self.drain(host)
        if self.link_state(host) != "absent":
            sh(["ip", "link", "del", self.veth(host)])

    def break_config(self, host, path, garbage, process):
        """Append garbage to a config file (kept for heal) and kill the daemon that reads it,
        so its next start fails the way a bad edit makes it fail."""
        self.backup(host, path)
        with open(self.fs(host, path), "a") as f:
            f.write(garbage)
        self.kill_in_host(host, [process])

    def heal(self, host):
        """Undo what lab.fault did to the host (power on, cable, config). Does not repair the
        cluster: starting the stack or PostgreSQL after heartbeat/postgres faults is the
        operator's job."""
        self.check_host(host)
        if not self.has_objects():
            raise StateError(f"lab {self.n} is not up")
        faults = self.faults()
        kinds = [f["kind"] for f in faults.get(host, [])]
        done = []
        for what, act in self.heal_steps(host):
            if not self.dry:
                act()
            done.append(what)
        for k in kinds:
            if k == "heartbeat":
                done.append("heartbeat: nothing to undo (start the stack: stack_start)")
            elif k == "postgres":
                done.append("postgres: nothing to undo (start PostgreSQL: pg_ctl start)")
        if self.dry:
            would = "would do: " + "; ".join(done) if done else "nothing to undo"
            self.progress(f"[dry] heal {host}: {would}")
            return done
        faults.pop(host, None)
        self.write_json("faults.json", faults)
        self.progress(f"heal {host}: " + ("; ".join(done) if done else "nothing to undo"))
        return done

    def heal_steps(self, host):
        """What heal has to undo on `host`, read from its state now: [(what, function)]. Powering
        on recreates a missing NIC and leaves a pulled cable pulled, hence the order."""
        steps = []
        link = self.link_state(host)
        if self.pid1(host) is None and self.fencing_on():
            # fenced (or powered off) in a fenced lab: cable first (the boot waits for sshd),
            # then power on through the host's BMC, as an operator would
            if link == "down":
                steps.append(("link up", lambda: sh(["ip", "link", "set", self.veth(host), "up"])))
            elif link == "absent":
                steps.append(("NIC recreated", lambda: self.make_link(host)))
            steps.append(("powered on through its BMC (ipmitool chassis power on)",
                          lambda: self.bmc_power_on(host)))
            link = "up"
        elif self.pid1(host) is None:
            boot = self.read_json("running.json", {}).get("boot_services", True)
            steps.append(
                (
                    "powered on (boot: PostgreSQL + cluster stack start)" if boot else "powered on",
                    lambda: self.power_on(host, boot),
                )
            )
        elif link == "absent":
            steps.append(("NIC recreated", lambda: self.make_link(host)))
        if link == "down":
            steps.append(("link up", lambda: sh(["ip", "link", "set", self.veth(host), "up"])))
        for path in ("/etc/pgpool2/pgpool.conf", "/etc/apache2/apache2.conf"):
            if self.backup_path(host, path).exists():
                name = path.rsplit("/", 1)[1]
                steps.append((f"{name} restored", lambda path=path: self.restore(host, path)))
        return steps

    def power_on(self, host, boot):
        if self.link_state(host) == "absent":
            self.make_link(host)
        self.start_init(host, boot=boot)
        self.wait_host(host)
        wait_until(f"{host} to finish booting", lambda: self.booted(host), 120, 0.2)
