"""The inventory checked as a whole: every problem at once, strict checks, inventory.check."""

import pathlib

import pytest

from hatasks import inventory, inventory_tasks
from hatasks.errors import UsageError

ROOT = pathlib.Path(__file__).resolve().parents[2]

BROKEN = (
    "[db]\n"                                              # 1
    "db01 ansible_host=10.0.0.1 pgpool_node_id=0\n"       # 2
    "db02 ansible_host=10.0.0.2 pgpool_node_id=0 pg_port=99999\n"  # 3
    "lb01\n"                                              # 4
    "[db:vars]\n"                                         # 5
    "cluster_kind=db\n"                                   # 6
    "pgpool_port=abc\n"                                   # 7
    "ansible_port=x\n"                                    # 8
    "pgdata=data\n"                                       # 9
    "[lb]\n"                                              # 10
    "lb01 ansible_host=10.0.0.21\n"                       # 11
    "[lb:vars]\n"                                         # 12
    "cluster_kind=web\n"                                  # 13
    "[x\n"                                                # 14
)


def lab_inventory_copy(tmp_path, with_ssh_config=True):
    """The repository's hosts.ini in a folder of its own, with or without the ssh_config file
    it names (lab.up writes that file; a fresh clone has none)."""
    (tmp_path / "lab").mkdir()
    if with_ssh_config:
        (tmp_path / "lab" / "ssh_config").write_text("Host db01\n    HostName 10.231.0.11\n")
    path = tmp_path / "hosts.ini"
    path.write_text((ROOT / "hosts.ini").read_text())
    return str(path)


def test_the_lab_inventory_passes_every_check(tmp_path):
    assert inventory.load(lab_inventory_copy(tmp_path), strict=True).problems == []


def test_a_missing_ssh_config_is_a_set_up_problem_not_a_host_down(tmp_path):
    path = lab_inventory_copy(tmp_path, with_ssh_config=False)
    # a plain load (tests, Python callers) keeps the problem as a strict one and does not refuse
    assert [p.strict for p in inventory.load(path).problems] == [True]
    with pytest.raises(UsageError) as exc:
        inventory.load(path, strict=True)
    assert "ssh_config 'lab/ssh_config'" in exc.value.message
    assert "no such file on this admin host" in exc.value.message


def test_every_problem_at_once_in_line_order():
    inv = inventory._parse(BROKEN, "site.ini")
    got = [(p.line, p.strict) for p in inv.problems]
    assert got == sorted(got, key=lambda t: t[0] or 0)
    text = [str(p) for p in inv.problems]
    for expected in (
        "site.ini:3: bad pg_port '99999' for host db02 (a port: 1-65535)",
        "site.ini:3: pgpool_node_id 0 of host db02 is also that of db01 (line 2) in cluster db",
        "site.ini:7: bad pgpool_port 'abc' in [db:vars] (a port: 1-65535)",
        "site.ini:8: bad ansible_port 'x' in [db:vars] (a port: 1-65535)",
        "site.ini:9: pgdata 'data' in [db:vars] must be an absolute path (a path on the hosts)",
        "site.ini:11: host lb01 is in 2 clusters: db (line 4) and lb (line 11); a host belongs to one",
        "site.ini:13: unknown cluster_kind 'web' of group lb (known: db, lb)",
        "site.ini:14: bad section header '[x' (no closing ']')",
        "site.ini:6: cluster db (cluster_kind=db) lacks vip, group, vip_resource, pgpool_resource"
        " (required for a db cluster)",
        "site.ini:2: host db01 of db cluster db lacks pg_bindir",
    ):
        assert expected in text


def test_load_refuses_with_one_line_listing_every_problem():
    with pytest.raises(UsageError) as e:
        inventory.parse(BROKEN, "site.ini")
    msg = e.value.message
    assert "\n" not in msg and e.value.code == 2
    assert msg.startswith("site.ini:3: bad pg_port '99999'")
    assert msg.endswith("(7 problems; inv inventory.check lists them)")
    assert "unknown cluster_kind" not in msg          # strict-only, off by default
    with pytest.raises(UsageError) as e, inventory.checking():
        inventory.parse(BROKEN, "site.ini")
    assert "unknown cluster_kind 'web'" in e.value.message


@pytest.mark.parametrize("text, problem", [
    ("", "site.ini: no hosts: the inventory is empty"),
    ("[db]\ndb01\n", "site.ini: no cluster: no group sets cluster_kind (db or lb)"),
    ("[db]\ndb01\ndb02\n[db:vars]\ncluster_kind=lb\nvip=v\ngroup=g\nvip_resource=r\n"
     "apache_resource=a\n", None),
    ("[db:vars]\ncluster_kind=db\n[db]\n", "site.ini:2: cluster db has no hosts"),
])
def test_whole_file_problems(text, problem):
    inv = inventory._parse(text, "site.ini")
    if problem is None:
        assert inv.problems == []
    else:
        assert problem in [str(p) for p in inv.problems]


def test_same_address_twice_is_a_strict_problem():
    inv = inventory._parse("[w]\nlb01 ansible_host=10.0.0.1\nlb02 ansible_host=10.0.0.1\n"
                           "[w:vars]\ncluster_kind=lb\nvip=v\ngroup=g\nvip_resource=r\n"
                           "apache_resource=a\n", "site.ini")
    assert [str(p) for p in inv.problems] == [
        "site.ini:3: host lb02 has the same address 10.0.0.1:22 as lb01 (line 2)"]


def test_resolved_inventory_masks_secrets():
    inv = inventory._parse("[db]\ndb01 ansible_password=hunter2 pgpool_node_id=0\n"
                           "[db:vars]\ncluster_kind=db\nsmtp_secret=s3\npgpass=lab/pgpass\n",
                           "site.ini")
    data = inventory_tasks.resolved(inv)
    text = repr(data)
    assert "hunter2" not in text and "s3" not in text
    assert data["hosts"][0]["vars"]["ansible_password"] == "***"
    assert data["clusters"][0]["vars"]["pgpass"] == "lab/pgpass"
