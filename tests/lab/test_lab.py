"""The lab itself, on the real thing: clusters formed, VIPs, replication through pgpool, ssh,
online recovery, every fault kind's runbook symptom and its heal, teardown and stale labs.

Checks go through the lab's ssh_config (as a tool would) or straight to the lab addresses; the lab's
own health definition (lab.core.Lab.problems) is used only to restore a healthy lab after a fault.
"""

import os
import pathlib
import socket
import subprocess
import time
import urllib.request

import pytest

from lab.core import Lab, parse_crm_mon

from .conftest import INSTANCE, INV, ROOT

pytestmark = pytest.mark.lab

N = INSTANCE
NET = f"10.231.{N}"
IP = {"db01": f"{NET}.11", "db02": f"{NET}.12", "lb01": f"{NET}.21", "lb02": f"{NET}.22"}
DB_VIP, LB_VIP = f"{NET}.100", f"{NET}.200"
STATE = ROOT / "lab" / ".state" / str(N)
SSH_CONFIG = ROOT / "lab" / "ssh_config" if N == 0 else STATE / "ssh_config"
PGDATA = "/var/lib/postgresql/15/data"
PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"


# --------------------------------------------------------------------------- helpers


def ssh(host, command, user=None, check=True, timeout=60):
    target = f"{user}@{host}" if user else host
    proc = subprocess.run(
        ["ssh", "-F", str(SSH_CONFIG), target, command],
        text=True,
        capture_output=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert (
            proc.returncode == 0
        ), f"ssh {target} {command!r}: rc={proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc


def psql(address, port, sql, db="postgres", check=True, env=None):
    full_env = {"PATH": os.environ["PATH"], "PGCONNECT_TIMEOUT": "5"}
    full_env.update(env or {})
    proc = subprocess.run(
        [
            "psql",
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            address,
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            db,
            "-c",
            sql,
        ],
        text=True,
        capture_output=True,
        timeout=60,
        env=full_env,
    )
    if check:
        assert proc.returncode == 0, f"psql {address}:{port} {sql!r}: {proc.stderr}"
    return proc


def crm(host):
    """crm_mon -1 --output-as=xml inside a host, parsed: nodes, resources, failures."""
    return parse_crm_mon(ssh(host, "crm_mon -1 --output-as=xml").stdout)


def wait_for(what, fn, timeout=90, interval=1.0):
    """Poll fn() until truthy; fail naming `what` and the last value after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (AssertionError, subprocess.TimeoutExpired, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}")


def pool_nodes():
    rows = psql(DB_VIP, 9999, "SHOW pool_nodes").stdout.splitlines()
    return {r.split("|")[1]: r.split("|")[3] for r in rows if r.count("|") > 3}


def group_node(cluster_host, resource):
    where = crm(cluster_host)["resources"].get(resource) or []
    assert len(where) == 1, f"{resource} runs on {where}"
    return where[0]


def power(host):
    return subprocess.run(
        [str(ROOT / "lab" / "bin" / "power-check"), "--lab", str(N), host],
        capture_output=True,
        text=True,
    ).returncode


def restore_health(inv):
    """Wait for the repaired lab to be healthy; if it does not get there, rebuild it and fail."""
    lab = Lab(N, out=lambda *a, **k: None)
    deadline = time.monotonic() + 90
    problems = lab.problems()
    while problems and time.monotonic() < deadline:
        time.sleep(2)
        problems = lab.problems()
    if problems:
        inv("lab.up", timeout=900)
        pytest.fail(f"lab not healthy after the repair (rebuilt it): {problems}")


# --------------------------------------------------------------------------- up


def test_up_is_idempotent(inv):
    proc = inv("lab.up")
    assert "already up and healthy" in proc.stdout


def test_both_clusters_formed_from_inside_the_hosts(inv):
    for members, resources in (
        (("db01", "db02"), ("db-vip", "pgpool")),
        (("lb01", "lb02"), ("lb-vip", "apache")),
    ):
        for host in members:
            state = crm(host)
            assert all(state["nodes"].get(m) == "online" for m in members), state
            where = {tuple(state["resources"][r]) for r in resources}
            assert len(where) == 1 and len(next(iter(where))) == 1, state
            assert state["failures"] == [], state
    assert group_node("lb01", "apache") == "lb01"  # the LB prefers lb01 (automatic failback)


def test_vips_answer(inv):
    assert (
        subprocess.run(["ping", "-c", "1", "-W", "2", DB_VIP], capture_output=True).returncode == 0
    )
    with socket.create_connection((DB_VIP, 9999), timeout=5):
        pass
    holder = group_node("lb01", "apache")
    with urllib.request.urlopen(f"http://{LB_VIP}/", timeout=5) as resp:
        assert resp.status == 200
        assert f"<h1>{holder}</h1>" in resp.read().decode()


def test_a_row_written_through_pgpool_reaches_both_backends(inv):
    marker = f"lab-test-{time.time_ns()}"
    psql(
        DB_VIP,
        9999,
        f"INSERT INTO customers VALUES ((SELECT max(id) + 1 FROM customers), '{marker}', "
        f"'{marker}@example.invalid', 'Kobe', timestamp '2026-05-01')",
        db="GYOM_DB",
    )
    for host in ("db01", "db02"):
        got = psql(
            IP[host], 5432, f"SELECT count(*) FROM customers WHERE name = '{marker}'", db="GYOM_DB"
        )
        assert got.stdout.strip() == "1", host
    counts = {
        h: psql(IP[h], 5432, "SELECT count(*) FROM orders", db="GYOM_DB").stdout.strip()
        for h in IP
        if h[:2] == "db"
    }
    assert counts["db01"] == counts["db02"] == "3000"


def test_pgpass_logs_in_through_an_ssh_tunnel_to_localhost(inv):
    """The tool's direct connection: ssh tunnel to 127.0.0.1:5432, scram password from the
    pgpass file."""
    pgpass = STATE / "pgpass"
    assert pgpass.stat().st_mode & 0o777 == 0o600
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tunnel = subprocess.Popen(
        ["ssh", "-F", str(SSH_CONFIG), "-N", "-L", f"127.0.0.1:{port}:127.0.0.1:5432", "db01"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            "the ssh tunnel",
            lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True,
            timeout=15,
            interval=0.2,
        )
        got = psql("127.0.0.1", port, "SELECT current_user", env={"PGPASSFILE": str(pgpass)})
        assert got.stdout.strip() == "postgres"
        wrong = psql("127.0.0.1", port, "SELECT 1", check=False, env={"PGPASSFILE": "/dev/null"})
        assert wrong.returncode != 0  # no password, no entry: scram refuses
    finally:
        tunnel.terminate()
        tunnel.wait(timeout=10)


def test_ssh_as_root_and_postgres(inv):
    for host in IP:
        assert ssh(host, "hostname").stdout.strip() == host
    for host in ("db01", "db02"):
        assert ssh(host, "id -un; hostname", user="postgres").stdout.split() == ["postgres", host]
    # postgres-to-postgres between the DB hosts (online recovery needs it)
    assert (
        ssh("db01", "ssh -o BatchMode=yes db02 hostname", user="postgres").stdout.strip() == "db02"
    )
    assert (
        ssh("db02", "ssh -o BatchMode=yes db01 hostname", user="postgres").stdout.strip() == "db01"
    )


def test_stack_and_power_check(inv):
    assert ssh("lb02", "/opt/hatasks-lab/bin/stack status").stdout.split() == [
        "corosync:",
        "running",
        "pacemakerd:",
        "running",
    ]
    assert [power(h) for h in IP] == [0, 0, 0, 0]
    assert subprocess.run([str(ROOT / "lab" / "bin" / "power-check"), "nosuchhost"]).returncode == 2


def test_generated_inventory_points_at_this_instance(inv):
    text = (STATE / "hosts.ini").read_text()
    assert f"db01 ansible_host={IP['db01']}" in text and f"vip={LB_VIP}" in text
    assert "ssh_config=ssh_config" in text and (STATE / "ssh_config").exists()
    wrapper = STATE / "bin" / "power-check"
    assert subprocess.run([str(wrapper), "db01"], capture_output=True).returncode == 0


def test_online_recovery_brings_node_1_back_with_identical_data(inv):
    pcp = "/usr/sbin/pcp_{} -h localhost -p 9898 -U postgres -w -n 1"
    holder = group_node("db01", "pgpool")
    info = ssh(holder, pcp.format("node_info"), user="postgres").stdout.split()
    assert info[:2] == ["db02", "5432"] and info[4] == "up"
    ssh(holder, pcp.format("detach_node"), user="postgres")
    wait_for("node 1 down in pgpool", lambda: pool_nodes().get("db02") == "down", 30)
    marker = f"during-detach-{time.time_ns()}"
    psql(
        DB_VIP,
        9999,
        f"INSERT INTO customers VALUES ((SELECT max(id) + 1 FROM customers), '{marker}', "
        f"'{marker}@example.invalid', 'Kobe', timestamp '2026-05-02')",
        db="GYOM_DB",
    )
    assert (
        psql(
            IP["db02"],
            5432,
            f"SELECT count(*) FROM customers WHERE name = '{marker}'",
            db="GYOM_DB",
        ).stdout.strip()
        == "0"
    )
    ssh(holder, pcp.format("recovery_node"), user="postgres", timeout=180)
    wait_for("node 1 up in pgpool", lambda: pool_nodes().get("db02") == "up", 30)
    q = "SELECT count(*), sum(hashtext(name)) FROM customers"
    assert (
        psql(IP["db01"], 5432, q, db="GYOM_DB").stdout
        == psql(IP["db02"], 5432, q, db="GYOM_DB").stdout
    )
    kept = ssh("db02", "ls -d /var/lib/postgresql/15/data.*").stdout.split()
    assert kept, "the old data directory was not kept"


def test_reboot_task_restarts_the_stack_at_boot(inv):
    before = ssh("lb02", "cat /proc/1/stat").stdout  # PID 1 survives a reboot; its children do not
    old_sshd = ssh("lb02", "cat /run/sshd.pid").stdout.strip()
    inv("lab.reboot", "--host", "lb02", timeout=300)
    assert ssh("lb02", "cat /run/sshd.pid").stdout.strip() != old_sshd
    assert ssh("lb02", "cat /proc/1/stat").stdout.split()[:2] == before.split()[:2]
    wait_for(
        "lb02 online after its reboot", lambda: crm("lb01")["nodes"].get("lb02") == "online", 60
    )
    restore_health(inv)


def test_reboot_from_inside_a_db_host_starts_postgresql_at_boot(inv):
    old_pm = ssh("db02", f"head -n 1 {PGDATA}/postmaster.pid").stdout.strip()
    ssh("db02", "/opt/hatasks-lab/bin/reboot", check=False)
    wait_for(
        "db02 PostgreSQL restarted by the boot",
        lambda: ssh(
            "db02", f"head -n 1 {PGDATA}/postmaster.pid", check=False, timeout=10
        ).stdout.strip()
        not in ("", old_pm),
        120,
    )
    wait_for(
        "db02 online after its reboot", lambda: crm("db01")["nodes"].get("db02") == "online", 60
    )
    if pool_nodes().get("db02") != "up":
        ssh(
            group_node("db01", "pgpool"),
            "/usr/sbin/pcp_recovery_node -h localhost -p 9898 -U postgres -w -n 1",
            user="postgres",
            timeout=180,
        )
    restore_health(inv)


# --------------------------------------------------------------------------- faults


def test_fault_power_then_heal(inv):
    inv("lab.fault", "--host", "db02", "--kind", "power")
    try:
        assert power("db02") == 1
        wait_for("db02 OFFLINE", lambda: crm("db01")["nodes"].get("db02") == "offline", 60)
        assert "power" in inv("lab.status").stdout
    finally:
        inv("lab.heal", "--host", "db02")
    assert power("db02") == 0
    # powered on = booted: PostgreSQL and the stack start by themselves (runbook step D)
    wait_for("db02 online again", lambda: crm("db01")["nodes"].get("db02") == "online", 90)
    assert ssh("db02", f"{PG_CTL} -D {PGDATA} status", user="postgres", check=False).returncode == 0
    # repair (the operator's job, not heal's): resync db02 if pgpool had dropped it
    if pool_nodes().get("db02") != "up":
        ssh(
            group_node("db01", "pgpool"),
            "/usr/sbin/pcp_recovery_node -h localhost -p 9898 -U postgres -w -n 1",
            user="postgres",
            timeout=180,
        )
    restore_health(inv)


def test_fault_network_then_heal(inv):
    inv("lab.fault", "--host", "lb02", "--kind", "network")
    veth = f"/sys/class/net/hl{N}v-lb02/flags"
    try:
        assert int(pathlib.Path(veth).read_text(), 16) & 1 == 0
        wait_for("lb02 OFFLINE", lambda: crm("lb01")["nodes"].get("lb02") == "offline", 60)
    finally:
        inv("lab.heal", "--host", "lb02")
    assert int(pathlib.Path(veth).read_text(), 16) & 1 == 1
    wait_for("lb02 online again", lambda: crm("lb01")["nodes"].get("lb02") == "online", 60)
    restore_health(inv)


def test_fault_heartbeat_then_heal(inv):
    inv("lab.fault", "--host", "db02", "--kind", "heartbeat")
    try:
        wait_for("db02 OFFLINE", lambda: crm("db01")["nodes"].get("db02") == "offline", 60)
        assert ssh("db02", "/opt/hatasks-lab/bin/stack status", check=False).returncode == 3
    finally:
        inv("lab.heal", "--host", "db02")
    ssh("db02", "/opt/hatasks-lab/bin/stack start")  # the repair: runbook "service heartbeat start"
    wait_for("db02 online again", lambda: crm("db01")["nodes"].get("db02") == "online", 60)
    restore_health(inv)


def test_fault_pgpool_start_failure_then_heal(inv):
    node = group_node("db01", "pgpool")
    inv("lab.fault", "--host", node, "--kind", "pgpool")
    try:
        state = wait_for(
            "a failed pgpool start",
            lambda: [
                f
                for f in crm("db01" if node == "db02" else "db02")["failures"]
                if f[0] == "pgpool_start_0"
            ],
            90,
        )
        assert node in [f[1] for f in state]
        assert "broken by lab fault" in ssh(node, "cat /etc/pgpool2/pgpool.conf").stdout
    finally:
        inv("lab.heal", "--host", node)
    assert "broken by lab fault" not in ssh(node, "cat /etc/pgpool2/pgpool.conf").stdout
    ssh(node, f"crm_resource --cleanup -r pgpool -N {node}")
    restore_health(inv)


def test_fault_postgres_then_heal(inv):
    inv("lab.fault", "--host", "db02", "--kind", "postgres")
    try:
        wait_for(
            "backend db02 down in SHOW pool_nodes", lambda: pool_nodes().get("db02") == "down", 60
        )
    finally:
        inv("lab.heal", "--host", "db02")
    ssh(
        "db02",
        f"{PG_CTL} -D {PGDATA} -w -l /var/log/postgresql/pg_ctl.log start >/dev/null",
        user="postgres",
    )
    ssh(
        group_node("db01", "pgpool"),
        "/usr/sbin/pcp_recovery_node -h localhost -p 9898 -U postgres -w -n 1",
        user="postgres",
        timeout=180,
    )
    restore_health(inv)


def test_fault_httpd_then_heal(inv):
    node = group_node("lb01", "apache")
    inv("lab.fault", "--host", node, "--kind", "httpd")
    try:
        assert ssh(node, "apachectl -t", check=False).returncode != 0
        failed = wait_for(
            "a failed apache start",
            lambda: [f for f in crm("lb01")["failures"] if f[0] == "apache_start_0"],
            90,
        )
    finally:
        inv("lab.heal", "--host", node)
    ssh(node, "apachectl -t")
    for failed_node in {f[1] for f in failed}:
        ssh(node, f"crm_resource --cleanup -r apache -N {failed_node}")
    restore_health(inv)


def test_fault_refuses_a_kind_that_does_not_fit_the_host(inv):
    proc = inv("lab.fault", "--host", "lb01", "--kind", "postgres", check=False)
    assert proc.returncode == 2 and "DB hosts only" in proc.stderr


# ------------------------------------------------------------------ ownership, subnet, teardown


def test_a_live_lab_of_another_checkout_is_not_torn_down(inv):
    alias = pathlib.Path(f"/sys/class/net/hlbr{N}/ifalias")
    mine = alias.read_text().strip()
    subprocess.run(
        ["ip", "link", "set", f"hlbr{N}", "alias", f"hatasks-lab {N} /elsewhere/checkout"],
        check=True,
    )
    try:
        proc = inv("lab.down", check=False)
        assert proc.returncode == 7 and "/elsewhere/checkout" in proc.stderr
        assert power("db01") == 0
    finally:
        subprocess.run(["ip", "link", "set", f"hlbr{N}", "alias", mine], check=True)


def test_up_refuses_a_subnet_in_use(inv, tmp_path):
    n = 250 if N != 250 else 251
    a, b = f"hltst{n}a", f"hltst{n}b"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"10.231.{n}.5/24", "dev", a], check=True)
        env = dict(inv.env, HATASKS_LAB=str(n))
        proc = subprocess.run(
            [INV, "lab.up"], cwd=ROOT, env=env, text=True, capture_output=True, timeout=60
        )
        assert proc.returncode == 3 and "in use" in proc.stderr, proc.stderr
        assert not [ns for ns in os.listdir("/run/netns") if ns.startswith(f"hl{n}-")]
        assert not pathlib.Path(f"/sys/class/net/hlbr{n}").exists()
    finally:
        subprocess.run(["ip", "link", "del", a], check=False)


def leftovers():
    netns = (
        [ns for ns in os.listdir("/run/netns") if ns.startswith(f"hl{N}-")]
        if os.path.isdir("/run/netns")
        else []
    )
    links = [
        ln for ln in os.listdir("/sys/class/net") if ln == f"hlbr{N}" or ln.startswith(f"hl{N}v-")
    ]
    mounts = [
        ln
        for ln in pathlib.Path("/proc/mounts").read_text().splitlines()
        if f"hl{N}-" in ln or str(STATE) in ln
    ]
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"hl{N}-" in cmd or str(STATE / "hosts") in cmd:
            procs.append(cmd)
    return {"netns": netns, "links": links, "mounts": mounts, "procs": procs}


def test_down_leaves_nothing_then_up_again_after_a_stale_lab(inv):
    inv("lab.down")
    assert leftovers() == {"netns": [], "links": [], "mounts": [], "procs": []}
    assert power("db01") == 1
    inv("lab.up", timeout=900)
    # a lab whose processes died with the session: namespaces and links left, no process
    lab = Lab(N, out=lambda *a, **k: None)
    for host in IP:
        os.kill(lab.pid1(host), 9)
    wait_for("all hosts powered off", lambda: [power(h) for h in IP] == [1, 1, 1, 1], 15, 0.2)
    assert leftovers()["netns"]
    proc = inv("lab.up", timeout=900)
    assert "stale lab found" in proc.stdout and "up and healthy" in proc.stdout
    assert ssh("db01", "hostname").stdout.strip() == "db01"
