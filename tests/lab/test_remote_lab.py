"""remote.py on the real lab: ssh to the four hosts, postgres runs, SQL through the tunnel,
host-key rejection and an unreachable address. Read-only: nothing in the lab changes."""

import os
import pathlib
import re

import paramiko
import pytest
from invoke import Config, Context

from hatasks import remote
from hatasks.errors import HaError, UnreachableError

pytestmark = pytest.mark.lab

ROOT = pathlib.Path(__file__).resolve().parents[2]
INSTANCE = int(os.environ.get("HATASKS_LAB", "0"))
INVENTORY = str(ROOT / "hosts.ini") if not INSTANCE else str(
    ROOT / "lab" / ".state" / str(INSTANCE) / "hosts.ini")


def make_ctx(inventory=INVENTORY, dry=False, timeout=5):
    return Context(Config(overrides={
        "hatasks": {"inventory": inventory, "connect_timeout": timeout},
        "run": {"dry": dry},
    }))


@pytest.fixture
def ctx(lab):
    return make_ctx()


@pytest.fixture
def inv(ctx):
    return remote.inventory(ctx)


def test_hostname_on_all_hosts_in_parallel(ctx, inv):
    names = inv.host_names
    assert sorted(names) == ["db01", "db02", "lb01", "lb02"]
    out = remote.probe_many(ctx, names, lambda n: remote.run(ctx, n, "hostname", probe=True))
    assert list(out) == names
    assert {n: r.stdout.strip() for n, r in out.items()} == {n: n for n in names}


def test_run_as_root_and_as_postgres(ctx):
    assert remote.run(ctx, "db01", "id -un", probe=True).stdout.strip() == "root"
    r = remote.run(ctx, "db01", 'id -un; echo "$HOME"; pwd', user="postgres", probe=True)
    user, home, cwd = r.stdout.split()
    assert user == "postgres"
    assert home == cwd and home != "/root"


def test_quoted_arguments_arrive_intact(ctx):
    import shlex
    value = "it's a \"value\" with $HOME and `x`;"
    r = remote.run(ctx, "db02", f"printf %s {shlex.quote(value)}", user="postgres", probe=True)
    assert r.stdout == value


def test_failed_command_is_an_haerror_with_the_exit_code(ctx):
    with pytest.raises(remote.CommandFailed) as e:
        remote.run(ctx, "lb01", "echo broken >&2; exit 3", probe=True)
    assert e.value.result.exited == 3
    assert e.value.message == "lb01: `echo broken >&2; exit 3` exited 3: broken"
    assert remote.run(ctx, "lb01", "exit 3", probe=True, warn=True).exited == 3


def test_dry_run_does_not_execute(lab, tmp_path, capsys):
    marker = f"/tmp/hatasks-dry-{os.getpid()}"
    dry = make_ctx(dry=True)
    remote.run(dry, "db01", f"touch {marker}")
    assert capsys.readouterr().out == f"[dry] db01 (as root): touch {marker}\n"
    r = remote.run(dry, "db01", f"test -e {marker}", probe=True, warn=True)
    assert r.exited == 1


def test_pg_connect_each_backend(ctx, inv):
    for h in inv.cluster("db").hosts:
        with remote.pg_connect(ctx, h.name) as pg:
            with pg.cursor() as cur:
                cur.execute("select 1, inet_server_port()")
                assert cur.fetchone() == (1, int(h.vars["pg_port"]))


def test_sql_rows_many_rows_through_the_tunnel(ctx):
    rows = remote.sql_rows(
        ctx, "db02", "select g as n, md5(g::text) as h from generate_series(1, %s) g", (50000,))
    assert len(rows) == 50000
    assert rows[-1]["n"] == 50000 and len(rows[-1]["h"]) == 32


def test_pgpool_show_pool_nodes_via_the_vip(ctx, inv):
    db = inv.cluster("db")
    rows = remote.sql_rows(ctx, db.hosts[0].name, "SHOW pool_nodes",
                           port=int(db.vars["pgpool_port"]), target=db.vars["vip"])
    by_id = {str(r["node_id"]): r for r in rows}
    for h in db.hosts:
        assert by_id[h.vars["pgpool_node_id"]]["hostname"] in (h.address, h.name)


def test_postgres_refusing_port_is_a_state_error(ctx):
    with pytest.raises(HaError) as e:
        with remote.pg_connect(ctx, "db01", port=5499):
            pass
    assert e.value.code == HaError.STATE
    assert e.value.message.startswith("db01: 127.0.0.1:5499: nothing accepts connections")


def _private_ssh_setup(tmp_path, inv, known_hosts_text):
    """A copy of the lab's ssh config whose UserKnownHostsFile is ours, and an inventory
    using it for db01 only."""
    src = inv.resolve_path(inv.host("db01").vars["ssh_config"])
    src_dir = os.path.dirname(src)
    lines = []
    for line in pathlib.Path(src).read_text().splitlines():
        parts = re.split(r"[\s=]+", line.strip(), maxsplit=1)
        k, value = parts[0].lower(), (parts[1] if len(parts) > 1 else "")
        if k in ("userknownhostsfile", "globalknownhostsfile"):
            continue
        if k == "identityfile":
            path = os.path.expanduser(value.strip().strip('"'))
            if not os.path.isabs(path):
                path = os.path.join(src_dir, path)
            line = f"  IdentityFile {path}"
        lines.append(line)
    kh = tmp_path / "known_hosts"
    kh.write_text(known_hosts_text)
    conf = tmp_path / "ssh_config"
    head = f"UserKnownHostsFile {kh}\nGlobalKnownHostsFile /dev/null\n"
    conf.write_text(head + "\n".join(lines) + "\n")
    h = inv.host("db01")
    ini = tmp_path / "hosts.ini"
    ini.write_text(f"[all:vars]\nssh_config={conf}\n[db]\ndb01 ansible_host={h.address}\n"
                   "[db:vars]\ncluster_kind=db\n")
    return make_ctx(str(ini))


def test_unknown_host_key_is_rejected(tmp_path, inv):
    ctx = _private_ssh_setup(tmp_path, inv, "")
    with pytest.raises(UnreachableError) as e:
        remote.run(ctx, "db01", "hostname", probe=True)
    assert e.value.message.startswith("db01 (")
    assert "unknown host key" in e.value.message


def test_wrong_host_key_is_rejected(tmp_path, inv):
    wrong = paramiko.RSAKey.generate(1024)
    h = inv.host("db01")
    text = "".join(f"{name} {wrong.get_name()} {wrong.get_base64()}\n"
                   for name in (h.name, h.address))
    ctx = _private_ssh_setup(tmp_path, inv, text)
    with pytest.raises(UnreachableError) as e:
        remote.run(ctx, "db01", "hostname", probe=True)
    assert "does not match known_hosts" in e.value.message


def test_the_right_key_in_our_own_known_hosts_is_accepted(tmp_path, inv):
    # fetch the lab's real key for db01 from the lab's own known_hosts
    src = inv.resolve_path(inv.host("db01").vars["ssh_config"])
    conf = paramiko.SSHConfig.from_path(src).lookup("db01")
    files = remote._known_hosts_files(conf, os.path.dirname(src))
    text = "".join(pathlib.Path(f).read_text() for f in files if os.path.isfile(f))
    ctx = _private_ssh_setup(tmp_path, inv, text)
    assert remote.run(ctx, "db01", "hostname", probe=True).stdout.strip() == "db01"


def test_unreachable_address_is_reported_with_the_host_name(tmp_path, inv):
    h = inv.host("db01")
    unused = re.sub(r"\.\d+$", ".250", h.address)   # inside the lab subnet, nobody there
    ini = tmp_path / "hosts.ini"
    ini.write_text(f"[db]\nghost01 ansible_host={unused}\n[db:vars]\ncluster_kind=db\n")
    ctx = make_ctx(str(ini), timeout=2)
    with pytest.raises(UnreachableError) as e:
        remote.run(ctx, "ghost01", "hostname", probe=True)
    assert e.value.message.startswith(f"ghost01 ({unused}:22) unreachable: ")
    assert e.value.message.endswith("[connect timeout 2s]")
    assert e.value.code == HaError.UNREACHABLE
