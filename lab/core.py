"""The lab as one object: `Lab` composes the parts (network, hosts, health, bootstrap, faults) and
owns the life cycle, lab.up and lab.down, which use all of them.

Where things are: base.py (names, command runner, state files), net.py (bridge, namespaces,
cables), hosts.py (PID 1, commands in a host, boot, reboot), health.py (crm_mon, pgpool, the
health definition, status), configs.py (file texts), bootstrap.py (keys, file trees,
PostgreSQL, stack, data), faults.py (lab.fault, lab.heal).
"""

import concurrent.futures
import datetime
import os
import pathlib
import shutil
import signal
import time

from hatasks.errors import HaError, StateError

from .base import (
    APP_DB,
    DB_HOSTS,
    FAULT_KINDS,
    HOST_PATH,
    HOSTS,
    LB_HOSTS,
    NEEDED,
    ROOT,
    LabError,
    code_version,
    instance_from_env,
    sh,
    wait_until,
)
from .bmc import LabBmc
from .bootstrap import LabBootstrap
from .faults import LabFaults
from .health import parse_crm_mon

# lab.core is the lab's front door: every public name of the lab, wherever it is defined
__all__ = [
    "APP_DB",
    "DB_HOSTS",
    "FAULT_KINDS",
    "HOSTS",
    "LB_HOSTS",
    "Lab",
    "LabError",
    "code_version",
    "instance_from_env",
    "parse_crm_mon",
    "sh",
    "wait_until",
]


class Lab(LabBootstrap, LabFaults, LabBmc):
    """Lab instance N: names, addresses, paths, and the operations on it."""

    # ---- preflight -----------------------------------------------------------------------
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

    # ---- up ------------------------------------------------------------------------------
    def up(self, force=False, fencing=False):
        """FENCING: a BMC per host (ipmi_sim) and a fence_ipmilan device per node in both
        clusters, stonith-enabled=true; without it the runbook's unfenced clusters."""
        self.fencing = bool(fencing)
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
                if bool(self.read_json("running.json", {}).get("fencing")) != self.fencing:
                    problems.append(f"fencing is to be {'on' if self.fencing else 'off'}")
                if not problems and self.dry:
                    self.progress("[dry] already up and healthy: nothing to do")
                    return "already"
                if not problems:
                    self.write_client_files()
                    self.progress("already up and healthy")
                    return "already"
                doing = "[dry] would rebuild" if self.dry else "rebuilding"
                self.progress(f"up but not healthy, {doing}: " + "; ".join(problems))
            self.down(force=True)
        if self.dry:
            self.check_subnet_free()
            self.progress(
                f"[dry] would start lab {self.n} (subnet {self.subnet}, bridge {self.bridge}): "
                f"keys and host file trees, bridge, {len(HOSTS)} namespaces and cables, "
                f"boot {', '.join(HOSTS)}, PostgreSQL, both clusters, {APP_DB}"
            )
            return "dry"
        self.clear_run_state()
        self.check_subnet_free()
        self.progress(f"starting (subnet {self.subnet}, bridge {self.bridge})")
        self.make_keys()
        self.build_files()
        self.progress("host file trees written")
        self.make_bridge()
        if self.fencing:
            self.make_mgmt_bridge()
            self.bmc_write_files()
            self.bmc_start()
            self.progress(f"BMCs answering IPMI on {self.mgmt_gw()} (management bridge "
                          f"{self.mgmt_bridge()}, ports {self.bmc_port('db01')}...)")
        for h in HOSTS:
            self.make_netns(h)
            self.make_link(h)
            if self.fencing:
                self.make_mgmt_link(h)
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
                "fencing": self.fencing,
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

    # ---- teardown ------------------------------------------------------------------------
    def down(self, force=False, quiet=False):
        """Remove everything of instance N: processes (by PID 1), namespaces, links, bridge."""
        if os.geteuid() != 0:
            raise StateError("the lab needs root")
        if not self.has_objects():
            if not quiet:
                self.progress("nothing to remove (no namespaces, no links)")
            if not self.dry:
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
        if self.dry:
            self.progress(
                f"[dry] would tear down lab {self.n}: kill PID 1 of "
                f"{', '.join(live) or 'no host (stale)'}; delete namespaces "
                f"{', '.join(self.ns(h) for h in self.netns_present()) or '-'}; delete links "
                f"{', '.join(self.links_present()) or '-'}"
            )
            return
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
            self.drain(h)
        self.bmc_stop()
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
