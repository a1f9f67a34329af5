"""A fleet: the README's inventory of three DB pairs and two LB pairs. `status` collects every
cluster in parallel under one deadline and starts with one line per cluster; `--cluster all`
of the read-only tasks; mutating tasks refuse to pick one cluster of several."""

import json
import re
import threading

import invoke
import pytest

from hatasks import backends, checks, crmmon, inventory, status
from hatasks.errors import HaError, UsageError

from conftest import FIXTURES as FIX, ROOT, make_ctx


def readme_fleet(tmp_path):
    """The README's fleet inventory, written to a file (the README's example must parse)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"### A fleet.*?```ini\n(.*?)```", text, re.S).group(1)
    path = tmp_path / "site.ini"
    path.write_text(block)
    return path


def xml(name):
    return crmmon.parse_crm_mon_xml((FIX / "captures" / "pacemaker" / name).read_text())


def pool(degenerated=False):
    return {"reachable": True, "degenerated": degenerated, "newest": "x-db1" if degenerated else None,
            "backends": [{"host": "db1", "status": "up"},
                         {"host": "db2", "status": "down" if degenerated else "up"}]}


def backends_up(c):
    return {"cluster": c.name, "backends": [
        {"host": h.name, "status": "up", "port": 5432, "version": "15", "databases": []}
        for h in c.hosts]}


def fleet_jobs(inv, hang=(), degenerated=(), release=None):
    """The collectors of every cluster of INV, answering as a healthy site would; the
    clusters in HANG never answer (until RELEASE is set), those in DEGENERATED report pgpool
    degenerated."""
    jobs = []
    for c in inv.clusters.values():
        def answer(value, name=c.name):
            def fn():
                if name in hang:
                    release.wait(30)
                return value
            return fn
        crm_mon = xml("initial.xml") if c.kind == "db" else crmmon.parse_crm_mon_xml(
            (FIX / "lab-samples" / "crm_mon-1_xml_lb.xml").read_text())
        jobs.append(((c.name, "hb"), answer(crm_mon)))
        jobs.append(((c.name, "lock"), answer({"held": None})))
        for h in c.hosts:
            jobs.append(((c.name, f"ssh:{h.name}"), answer({"ok": True})))
        if c.kind == "db":
            jobs.append(((c.name, "pgpool"), answer(pool(c.name in degenerated))))
            for b in backends_up(c)["backends"]:
                jobs.append(((c.name, f"pg:{b['host']}"), answer(b)))
    return list(inv.clusters), jobs


@pytest.fixture
def fleet(tmp_path, mocker):
    path = readme_fleet(tmp_path)
    inv = inventory.load(str(path))
    mocker.patch.object(status.remote, "inventory", return_value=inv)
    return inv


def test_the_readme_fleet_has_three_db_pairs_and_two_lb_pairs(fleet):
    assert [(c.name, c.kind, len(c.hosts)) for c in fleet.clusters.values()] == [
        ("orders", "db", 2), ("billing", "db", 2), ("reports", "db", 2),
        ("shop", "lb", 2), ("intranet", "lb", 2)]
    assert fleet.cluster("billing").vars["pg_port"] == "5432"  # from the parent group


def test_collectors_cover_every_cluster_and_ask_each_lock(fleet):
    names, jobs = status.collectors(object())
    assert names == ["orders", "billing", "reports", "shop", "intranet"]
    keys = {k for k, _ in jobs}
    for name in names:
        assert (name, "hb") in keys and (name, "lock") in keys
    assert ("billing", "pg:billing-db2") in keys and ("shop", "pgpool") not in keys


def test_status_of_a_fleet_names_the_problem_with_its_cluster(fleet, mocker):
    mocker.patch.object(status, "collectors",
                        return_value=fleet_jobs(fleet, degenerated={"billing"}))
    data = status.collect(object())
    by = {line["cluster"]: line for line in data["summary"]}
    assert list(by) == ["orders", "billing", "reports", "shop", "intranet"]
    assert [n for n, line in by.items() if not line["healthy"]] == ["billing"]
    assert by["billing"]["problems"][0].startswith("pgpool degenerated")
    assert data["problems"] and all(p.startswith("billing: ") for p in data["problems"])
    text = status._table(data)
    # the summary comes first, one line per cluster, before any cluster's details
    first = text.split("\n\n")[0].splitlines()
    assert first[0] == "== 5 cluster(s), 4 healthy"
    rows = [line.split()[:3] for line in first[3:]]
    assert rows == [["orders", "db", "healthy"], ["billing", "db", "UNHEALTHY"],
                    ["reports", "db", "healthy"], ["shop", "lb", "healthy"],
                    ["intranet", "lb", "healthy"]]
    assert text.index("== cluster orders") > text.index("intranet")


def test_a_cluster_silent_past_the_deadline_is_listed_as_not_answering(fleet, mocker):
    release = threading.Event()
    mocker.patch.object(status, "collectors",
                        return_value=fleet_jobs(fleet, hang={"reports"}, release=release))
    mocker.patch.object(status, "deadline_seconds", return_value=2)
    try:
        data = status.collect(object())
    finally:
        release.set()
    by = {line["cluster"]: line for line in data["summary"]}
    assert by["reports"]["answered"] is False and by["reports"]["healthy"] is False
    assert by["reports"]["problems"] == ["no answer within 2s from any host of the cluster"]
    assert all(by[n]["healthy"] for n in ("orders", "billing", "shop", "intranet"))
    assert set(data["unreachable"]) == {"reports-db1", "reports-db2"}
    assert re.search(r"^reports +db +NO ANSWER +no answer within 2s", status._table(data), re.M)


def test_status_task_exits_non_zero_and_json_lists_every_cluster(fleet, mocker, capsys,
                                                                 tmp_path):
    mocker.patch.object(status, "collectors",
                        return_value=fleet_jobs(fleet, degenerated={"orders"}))
    with pytest.raises(invoke.Exit) as exc:
        status.status(make_ctx(tmp_path), format="json")
    assert exc.value.code == HaError.STATE
    data = json.loads(capsys.readouterr().out)
    assert [line["cluster"] for line in data["summary"]] == list(fleet.clusters)
    assert set(data["clusters"]) == set(fleet.clusters)
    assert data["healthy"] is False


def test_status_cluster_all_is_every_cluster_and_a_name_chooses_one(fleet):
    assert status.chosen_names(object(), "all") == list(fleet.clusters)
    assert status.chosen_names(object(), None) == list(fleet.clusters)
    assert status.chosen_names(object(), "shop") == ["shop"]
    names, jobs = status.collectors(object(), "billing")
    assert names == ["billing"] and {k[0] for k, _ in jobs} == {"billing"}
    with pytest.raises(UsageError, match="several clusters of kind 'db'"):
        status.chosen_names(object(), "db")


def test_mutating_tasks_refuse_to_pick_one_cluster_of_several(fleet):
    with pytest.raises(UsageError, match="several db clusters: name one with --cluster "
                                         r"\(orders, billing, reports\)"):
        backends.pgpool_cluster(object(), None)  # sync.resync's, sync.rollback's default
    with pytest.raises(UsageError, match="several lb clusters"):
        checks.cluster(object(), None, "lb")  # lb.failover, lb.recover
    assert backends.pgpool_cluster(object(), "billing").name == "billing"


def test_each_cluster_table_json_and_the_highest_exit(fleet, capsys):
    seen = []

    def show(name):
        seen.append(name)
        print(json.dumps({"name": name, "ok": name != "billing"}))
        if name == "billing":
            raise invoke.Exit(code=3)
        if name == "reports":
            raise HaError("pgpool does not answer", HaError.UNREACHABLE)

    with pytest.raises(HaError) as exc:
        checks.each_cluster(object(), "db", "json", show)
    assert seen == ["orders", "billing", "reports"]
    assert exc.value.code == HaError.UNREACHABLE
    assert "2 of 3 db cluster(s) not healthy: billing (exit 3), reports (exit 4)" in \
        exc.value.message
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert [d["cluster"] for d in doc["clusters"]] == ["orders", "billing", "reports"]
    assert [d["ok"] for d in doc["clusters"]] == [True, False, True]
    assert "reports: pgpool does not answer" in out.err

    checks.each_cluster(object(), "lb", "table", lambda name: print(f"fine {name}"))
    assert capsys.readouterr().out.split("\n")[:4] == ["== cluster shop", "fine shop", "",
                                                      "== cluster intranet"]
