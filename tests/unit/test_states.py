"""The diagnoses of the states hatasks or an operator leaves behind (hatasks.states), on facts
shaped as db.collect_db reads them; combinations ranked. Lab captures of the same states are in
tests/fixtures/diagnose/states_*.json (test_states_captured below)."""

import copy
import json
import pathlib

import pytest

from hatasks import states

FIX = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "diagnose"


def res(rid, node="db01", **kw):
    out = {"id": rid, "node": node, "role": "Started" if node else "Stopped",
           "nodes": [node] if node else [], "managed": True, "maintenance": False,
           "target_role": None, "blocked": False, "failed": False}
    out.update(kw)
    return out


def view(nodes=None, group_node="db01", resources=None, flags=None, node_flags=None):
    nodes = nodes or {"db01": "online", "db02": "online"}
    nf = {n: {"maintenance": False, "standby": st == "standby", "unclean": False,
              "pending": False, "online": st != "offline"} for n, st in nodes.items()}
    for n, extra in (node_flags or {}).items():
        nf[n].update(extra)
    return {"nodes": dict(nodes), "group_node": group_node,
            "flags": dict({"maintenance_mode": False, "stop_all_resources": False,
                           "quorum": True, "stonith_enabled": False, "dc": "db01"}, **(flags or {})),
            "node_flags": nf, "bans": [],
            "resources": resources if resources is not None else
            [res("db-vip", group_node), res("pgpool", group_node)],
            "failed_actions": []}


def host(v, port=5432, running=True, datadir=True):
    return {"ssh": True, "ssh_error": None, "power": None, "crm": v, "crm_error": None,
            "pg": {"running": running, "port": port if running else None, "connect": running,
                   "pg_port": 5432, "datadir": datadir}}


def facts(v=None, pool=None, **kw):
    v = v or view()
    out = {"cluster": "db", "kind": "db", "order": ["db01", "db02"], "group": "grp-pgpool",
           "pgpool_resource": "pgpool", "hosts": {"db01": host(v), "db02": host(v)},
           "pgpool": pool or {"reachable": True, "error": None, "degenerated": False,
                              "newest": None, "via": "db01",
                              "backends": [{"node_id": 0, "host": "db01", "status": "up"},
                                           {"node_id": 1, "host": "db02", "status": "up"}]},
           "failback_to": None, "method": "dump", "pending": None, "first_degenerated": None,
           "constraints": [], "resync": None, "lock": None, "home": None}
    out.update(kw)
    return out


DOWN = {"reachable": False, "error": "pgpool does not answer on 10.0.0.10:9999",
        "backends": [], "degenerated": None, "newest": None, "via": None}


def plan_tasks(d):
    return [s["task"] for s in d["steps"] if not s.get("conditional")]


def test_healthy_stays_healthy():
    d = states.diagnose_db(facts())
    assert d["pattern"] == "healthy" and d["problems"] == []


def test_cluster_maintenance_is_a_human_decision_naming_the_command():
    v = view(flags={"maintenance_mode": True},
             resources=[res("db-vip", managed=False, maintenance=True),
                        res("pgpool", managed=False, maintenance=True)])
    d = states.diagnose_db(facts(v))
    assert d["pattern"] == "maintenance" and ["maintenance", None] in d["problems"]
    assert d["steps"][0]["task"] == "manual"
    assert "inv hb.maintenance --off" in d["steps"][0]["text"]
    assert not any(p[0] == "pgpool-stopped" for p in d["problems"])


def test_node_maintenance_names_the_node():
    d = states.diagnose_db(facts(view(node_flags={"db02": {"maintenance": True}})))
    assert d["problems"][0] == ["maintenance", "db02"]
    assert "hb.maintenance --off --node db02" in d["steps"][0]["text"]


def test_standby_left_is_not_a_heartbeat_failure():
    v = view(nodes={"db01": "online", "db02": "standby"})
    d = states.diagnose_db(facts(v))
    assert d["pattern"] == "standby-left" and d["host"] == "db02"
    assert d["plan"][0] == "inv hb.online --node db02"
    assert not any(p[0] == "heartbeat" for p in d["problems"])


def test_pgpool_stopped_by_pgpool_stop_is_started_again():
    v = view(resources=[res("db-vip"), res("pgpool", managed=False, maintenance=True)])
    d = states.diagnose_db(facts(v, DOWN))
    assert d["pattern"] == "pgpool-stopped" and d["host"] == "db01"
    assert d["plan"][0] == "inv pgpool.start --host db01"
    assert [p[0] for p in d["problems"]] == ["pgpool-stopped"]  # not also "pgpool" + a wait
    assert "wait" not in plan_tasks(d)


def test_pgpool_disabled_is_pgpool_stopped():
    v = view(group_node=None, resources=[res("db-vip"), res("pgpool", None, target_role="Stopped")])
    d = states.diagnose_db(facts(v, DOWN))
    assert d["pattern"] == "pgpool-stopped"
    assert "disabled (target-role Stopped)" in d["evidence"][0]


RESYNC = {"op": "abc123", "method": "dump", "source": "db01", "target": "db02",
          "maint_port": 5433, "done": ["plan", "stop_pgpool", "keep_datadir"],
          "last": "keep_datadir", "outcome": "interrupted", "message": None, "resumable": True}


def test_interrupted_resync_plans_resume_or_rollback_saying_what_each_does():
    v = view(resources=[res("db-vip"), res("pgpool", managed=False, maintenance=True)])
    f = facts(v, DOWN, resync=dict(RESYNC))
    f["hosts"]["db02"]["pg"] = {"running": False, "port": None, "connect": False,
                                "pg_port": 5432, "datadir": False}
    d = states.diagnose_db(f)
    assert d["pattern"] == "resync-interrupted" and d["host"] == "db02"
    assert d["plan"][0] == "inv sync.resume"
    assert d["plan"][1] == "or: inv sync.rollback"
    assert "after its last completed step (keep_datadir)" in d["steps"][0]["why"]
    assert "old data directory back" in d["steps"][1]["why"]
    # no pg.start on a host whose data directory the resync moved away
    assert not any(s["task"] == "pg.start" and s["args"].get("host") == "db02" for s in d["steps"])
    assert "keep_datadir" in d["evidence"][0]


def test_resync_facts_from_the_journal_state():
    assert states.resync_facts(None) is None
    assert states.resync_facts({"finished": True}) is None
    assert states.resync_facts({"finished": False, "rolled_back": True}) is None
    rs = states.resync_facts({"op": "x", "finished": False, "rolled_back": False,
                              "params": {"method": "dump", "source": "db01", "target": "db02"},
                              "done": ["plan", "stop_pgpool"], "outcome": "failed",
                              "message": "interrupted"})
    assert rs["last"] == "stop_pgpool" and rs["resumable"] and rs["target"] == "db02"


def test_constraint_left_by_a_move_is_cleared():
    cons = [{"id": "cli-prefer-grp-pgpool", "resource": "grp-pgpool", "node": "db02",
             "score": 1000000, "kind": "move"}]
    d = states.diagnose_db(facts(view(group_node="db02"), constraints=cons))
    assert d["pattern"] == "constraint-left" and d["host"] == "db02"
    assert d["plan"][0] == "inv hb.clear --resource grp-pgpool"
    assert "cli-prefer-grp-pgpool" in d["evidence"][0]


def test_postgres_left_on_the_maintenance_port():
    f = facts()
    f["hosts"]["db02"]["pg"].update(port=5433)
    d = states.diagnose_db(f)
    assert d["pattern"] == "maintenance-port" and d["plan"][0] == "inv pg.stop --host db02"


def test_blocked_resource_is_cleaned_up():
    v = view(resources=[res("db-vip"), res("pgpool", managed=False, blocked=True, failed=True)])
    d = states.diagnose_db(facts(v))
    assert d["pattern"] == "blocked"
    assert d["plan"][0] == "inv hb.cleanup --resource pgpool --node db01"


def test_no_quorum_needs_a_human():
    d = states.diagnose_db(facts(view(flags={"quorum": False})))
    assert d["pattern"] == "no-quorum" and d["steps"][0]["task"] == "manual"


def test_operation_in_progress_holds_the_plan_back():
    v = view(nodes={"db01": "standby", "db02": "online"}, group_node="db02")
    lock = {"user": "ops", "pid": 42, "host": "admin1", "action": "db.failover",
            "since": "2026-11-30T03:00:00Z"}
    d = states.diagnose_db(facts(v, lock=lock))
    assert d["pattern"] == "in-progress" and d["steps"] == [] and d["plan"] == []
    assert d["evidence"][0].startswith("operation db.failover by ops (pid 42 on admin1) since "
                                       "2026-11-30T03:00:00Z in progress")
    assert ["standby-left", "db01"] in d["problems"]


def test_a_node_joining_is_not_a_cut_network():
    a = view(nodes={"db01": "online", "db02": "offline"}, node_flags={"db02": {"pending": True}})
    b = view(nodes={"db01": "offline", "db02": "online"}, group_node=None, resources=[])
    f = facts()
    f["hosts"]["db01"]["crm"], f["hosts"]["db02"]["crm"] = a, b
    d = states.diagnose_db(f)
    assert d["pattern"] == "joining"
    assert d["steps"][0]["task"] == "manual" and d["steps"][0]["settle"]
    assert not any(p[0] == "network" for p in d["problems"])


def test_combination_ranked_maintenance_before_standby_before_pgpool():
    v = view(nodes={"db01": "online", "db02": "standby"},
             node_flags={"db01": {"maintenance": True}},
             resources=[res("db-vip"), res("pgpool", managed=False, maintenance=True)])
    cons = [{"id": "cli-ban-grp-pgpool-on-db02", "resource": "grp-pgpool", "node": "db02",
             "score": -1000000, "kind": "ban"}]
    d = states.diagnose_db(facts(v, DOWN, constraints=cons))
    assert [p[0] for p in d["problems"]] == ["maintenance", "standby-left", "constraint-left",
                                             "pgpool-stopped"]
    assert [s["task"] for s in d["steps"]][:4] == ["manual", "hb.online", "hb.clear",
                                                   "pgpool.start"]


def test_combination_resync_interrupted_wins_over_what_it_left():
    v = view(resources=[res("db-vip"), res("pgpool", managed=False, maintenance=True)])
    f = facts(v, DOWN, resync=dict(RESYNC))
    f["hosts"]["db02"]["pg"].update(port=5433)
    d = states.diagnose_db(f)
    assert d["problems"][0] == ["resync-interrupted", "db02"]
    assert not any(p[0] == "maintenance-port" for p in d["problems"])
    assert plan_tasks(d)[0] == "sync.resume"


def test_failback_names_the_home_node_not_the_failed_host():
    # a failover moved the group from db01 to db02; later PostgreSQL fails on db01
    f = facts(view(group_node="db02"), home="db01")
    f["hosts"]["db01"]["pg"] = {"running": False, "port": None, "connect": False,
                                "pg_port": 5432, "datadir": True}
    d = states.diagnose_db(f)
    assert d["pattern"] == "postgres" and d["host"] == "db01"
    assert d["plan"][-1] == "optional: inv db.failback --to db01"
    # PostgreSQL fails on db02 while the group runs on db01 (its home): no failback at all,
    # and never one to the failed host
    f = facts(view(group_node="db01"), home="db01")
    f["hosts"]["db02"]["pg"] = {"running": False, "port": None, "connect": False,
                                "pg_port": 5432, "datadir": True}
    d = states.diagnose_db(f)
    assert d["pattern"] == "postgres" and not any("db.failback" in p for p in d["plan"])


def test_home_from_journal():
    recs = [{"cluster": "db", "event": "start", "action": "db.failover", "args": {"from": "db02"}},
            {"cluster": "db", "event": "start", "action": "hb.online", "args": {}}]
    assert states.home_from_journal(recs, "db") == "db02"
    assert states.home_from_journal(recs, "lb") is None


CAPTURED = sorted(p.stem for p in FIX.glob("states_*.json"))


@pytest.mark.parametrize("name", CAPTURED)
def test_states_captured(name):
    """Facts captured on the lab in each state (db.diagnose --format json --facts): the
    pattern named then is named now, first, with the same plan."""
    data = json.loads((FIX / f"{name}.json").read_text())
    d = states.diagnose_db(copy.deepcopy(data["facts"]))
    assert d["pattern"] == data["pattern"] == name.split("_", 2)[1].replace("-", "_").replace("_", "-")
    assert d["plan"] == data["plan"]


def test_impact_says_pgpool_stops_with_an_estimate_and_names_the_online_method():
    f = facts()
    f["hosts"]["db01"]["pg"]["bytes"] = 200 * 1048576
    steps = [{"task": "sync.resync", "args": {"method": "dump", "target": "db02"}, "why": ""},
             {"task": "sync.resume", "args": {}, "why": ""}]
    f["resync"] = dict(RESYNC)  # stop_pgpool done, start_pgpool not
    lines = states.impact(f, steps)
    assert lines[0] == ("dump resync: pgpool STOPS and clients are refused for about 10 s "
                        "(200 MB of data at ~20 MB/s); `--method online` keeps pgpool serving "
                        "while db02 is rebuilt")
    assert lines[1].startswith("sync.resume: pgpool stays stopped")
    # the resync started pgpool again (cut at its attach step): the resume does not stop it
    f["resync"] = dict(RESYNC, done=RESYNC["done"] + ["start_pgpool"])
    assert states.impact(f, steps[1:]) == []
    # cut before its stop: the resume stops it for the copy
    f["resync"] = dict(RESYNC, done=["plan", "record_newest"])
    assert states.impact(f, steps[1:])[0].startswith("sync.resume: pgpool STOPS")
    f["resync"] = dict(RESYNC, method="online", done=["plan", "record_newest"])
    assert states.impact(f, steps[1:]) == []
    online = [{"task": "sync.resync", "args": {"method": "online", "target": "db02"}, "why": ""}]
    assert states.impact(f, online) == []


def lb_facts(v, **kw):
    out = {"cluster": "lb", "kind": "lb", "order": ["lb01", "lb02"], "group": "grp-apache",
           "apache_resource": "apache",
           "hosts": {n: {"ssh": True, "ssh_error": None, "power": None, "crm": v,
                         "crm_error": None} for n in ("lb01", "lb02")},
           "web": {"serving": True, "http_code": 200, "page_node": "lb01"},
           "policy": {"preferred": "lb01", "score": 100, "stickiness": 0, "automatic": True},
           "constraints": [], "lock": None}
    out.update(kw)
    return out


def lb_view(**kw):
    v = view(nodes={"lb01": "online", "lb02": "online"}, group_node="lb01",
             resources=[res("lb-vip", "lb01"), res("apache", "lb01")], **kw)
    return v


def test_lb_healthy_and_lb_maintenance_and_ban():
    assert states.diagnose_lb(lb_facts(lb_view()))["pattern"] == "healthy"
    d = states.diagnose_lb(lb_facts(lb_view(flags={"maintenance_mode": True})))
    assert d["pattern"] == "maintenance" and d["steps"][0]["task"] == "manual"
    cons = [{"id": "cli-ban-grp-apache-on-lb02", "resource": "grp-apache", "node": "lb02",
             "score": -1000000, "kind": "ban"}]
    d = states.diagnose_lb(lb_facts(lb_view(), constraints=cons))
    assert d["pattern"] == "constraint-left"
    assert d["plan"][0] == "inv hb.clear --resource grp-apache --cluster lb"


def test_interrupted_resync_settled_by_a_later_online_recovery():
    st = {"op": "r1", "finished": False, "rolled_back": False, "cleaned": False,
          "params": {"method": "dump", "source": "db01", "target": "db02"}, "done": ["plan"],
          "outcome": None, "message": None}
    recs = [{"op": "r1", "event": "start", "action": "sync.resync"},
            {"op": "r1", "event": "checkpoint", "step": "plan"}]
    assert states.resync_facts(st, recs)["target"] == "db02"
    later = recs + [{"op": "p2", "event": "start", "action": "pgpool.recover"},
                    {"op": "p2", "event": "done", "action": "pgpool.recover"}]
    assert states.resync_facts(st, later) is None
    assert states.resync_facts(dict(st, cleaned=True), recs) is None


def test_a_host_key_problem_is_never_a_network_failure_nor_a_resync():
    f = facts()
    f["hosts"]["db02"] = {"ssh": False, "power": None, "crm": None, "crm_error": None,
                          "pg": None,
                          "ssh_error": "db02 (10.231.1.12:22) unreachable: host key does not "
                                       "match known_hosts (possible impersonation)"}
    d = states.diagnose_db(f)
    assert d["pattern"] == "host-key" and d["host"] == "db02"
    assert d["steps"][0]["task"] == "manual" and "fingerprint" in d["steps"][0]["text"]
    assert not any(s["task"] == "sync.resync" for s in d["steps"])
    assert not any(p[0] in ("network", "power") for p in d["problems"])


def test_lb_host_key_problem():
    f = lb_facts(lb_view())
    f["hosts"]["lb02"] = {"ssh": False, "power": None, "crm": None, "crm_error": None,
                          "ssh_error": "lb02 (10.0.0.22:22) unreachable: unknown host key (not "
                                       "in known_hosts; add it after checking the fingerprint)"}
    d = states.diagnose_lb(f)
    assert d["pattern"] == "host-key" and d["host"] == "lb02"
    assert [s["task"] for s in d["steps"] if not s.get("conditional")] == ["manual"]
    assert "fingerprint" in d["steps"][0]["text"]


def test_a_resync_owed_by_a_past_network_failure_asks_no_human_again():
    pending = {"pattern": "network", "host": "db02", "source": "db01", "ts": "2026-11-30T03:00Z"}
    d = states.diagnose_db(facts(pending=pending))
    assert d["pattern"] == "network" and d["problems"] == []
    assert plan_tasks(d) == ["sync.resync"]


def test_stale_attach_resyncs_from_the_newest():
    first = {"newest": "db01", "ts": "2026-11-30T03:00Z", "evidence": {}}
    f = facts(first_degenerated=first,
              contents={"equal": False, "differences": ["GYOM_DB.public.t db01=2 db02=None"]})
    d = states.diagnose_db(f)
    assert d["pattern"] == "stale-attach" and d["host"] == "db02"
    assert d["plan"][0] == "inv sync.resync --source db01 --target db02 --method dump"
    f["contents"]["equal"] = True
    assert states.diagnose_db(f)["pattern"] == "healthy"


# ---------------------------------------------------------------- data-safety records


def test_a_forced_attach_is_stale_until_proved_and_plans_a_resync_from_the_other():
    d = states.diagnose_db(facts(stale_attached=["db02"],
                                 contents={"equal": False, "differences": ["GYOM_DB.public.t: "
                                                                           "db01 5, db02 4"]}))
    assert d["problems"] == [["stale-attach", "db02"]]
    rs = [s for s in d["steps"] if s["task"] == "sync.resync"]
    assert rs and rs[0]["args"]["source"] == "db01" and rs[0]["args"]["target"] == "db02"
    assert any("pgpool.attach --force" in e for e in d["evidence"])


def test_a_pending_salvage_is_a_split_brain_whose_resync_waits_for_the_operators_choice():
    rec = {"backend": "db02", "source": "db01", "local": "/var/lib/hatasks/salvage-db02.sql",
           "ts": "2026-11-30T20:00:00Z", "proof": {"tables": [{"table": "public.t", "rows": 1}]},
           "rebuilt": False}
    d = states.diagnose_db(facts(salvage_pending=[rec]))
    assert d["problems"][0] == ["split-brain", "db02"]
    rs = d["steps"][0]
    assert rs["task"] == "sync.resync" and rs["args"]["force"] is True
    assert (rs["args"]["source"], rs["args"]["target"]) == ("db01", "db02")
    assert rs["hidden"] == {"salvage": rec["local"]}  # db.recover stops there without --source
    assert "--salvage" not in " ".join(d["plan"])      # the plan shows only real options
    assert "sync.salvage --file /var/lib/hatasks/salvage-db02.sql" in rs["why"]


def test_a_resync_its_proof_refused_is_not_planned_as_a_resume():
    """The resync's proof found writes on its target the source lacks (exit 3, salvage file
    written): sync.resume would prove again and refuse again. The plan names the choice."""
    rec = {"backend": "db02", "source": "db01", "local": "/var/lib/hatasks/salvage-db02.sql",
           "ts": "2026-11-30T20:00:00Z", "proof": {}, "rebuilt": False}
    rs = dict(RESYNC, done=["plan", "record_newest"], last="record_newest", outcome="failed",
              message="split brain: refusing to rebuild db02 from db01: ...")
    d = states.diagnose_db(facts(resync=rs, salvage_pending=[rec]))
    tasks = [s["task"] for s in d["steps"]]
    assert "sync.resume" not in tasks
    # split-brain's resync is the step db.recover --source runs; the interrupted resync's own
    # step is the operator's choice, with the salvage file
    assert tasks[0] == "sync.resync" and d["steps"][0]["hidden"] == {"salvage": rec["local"]}
    man = next(s for s in d["steps"] if s["task"] == "manual")
    assert "db.recover --source db01" in man["text"] and "--source db02" in man["text"]
    assert rec["local"] in man["text"] and "sync.resume would refuse again" in man["text"]
    assert next(s for s in d["steps"] if s["task"] == "sync.rollback").get("conditional")

    # a salvage record of another pair, or one already rebuilt, is not this resync's refusal
    other = dict(rec, backend="db03")
    d = states.diagnose_db(facts(resync=dict(RESYNC), salvage_pending=[other]))
    assert "sync.resume" in [s["task"] for s in d["steps"]]

    # no local salvage record, only the refusal in the end message: the resync itself is named
    d = states.diagnose_db(facts(resync=rs))
    man = next(s for s in d["steps"] if s["task"] == "manual")
    assert "sync.resume" not in [s["task"] for s in d["steps"]]
    assert "inv sync.resync --source db01 --target db02 --force" in man["text"]


def test_a_salvage_left_after_the_rebuild_is_noted_not_a_fault():
    rec = {"backend": "db02", "source": "db01", "local": "/var/lib/hatasks/salvage-db02.sql",
           "ts": "2026-11-30T20:00:00Z", "proof": {}, "rebuilt": True}
    d = states.diagnose_db(facts(salvage_pending=[rec]))
    assert d["pattern"] == "healthy" and d["problems"] == []
    assert any("sync.salvage --file /var/lib/hatasks/salvage-db02.sql" in e
               for e in d["evidence"])


def test_node_ids_that_disagree_with_pgpool_come_first_and_need_a_human():
    line = "inventory: db02 is pgpool node 0; pgpool: node 0 is db01:5432"
    d = states.diagnose_db(facts(node_ids=[line], standby=None))
    assert d["problems"][0] == ["node-ids", None]
    assert d["pattern"] == "node-ids" and line in " ".join(d["evidence"])
    assert [s["task"] for s in d["steps"]] == ["manual"] and "node-ids" in states.HUMAN


def test_overtaken_pure_rule():
    from hatasks import syncplan

    st = {"db01": "down", "db02": "up"}
    why = syncplan.overtaken("dump", ["record_newest"], "db01", "db02", st)
    assert "clients have written to db02" in why and "db01 is down" in why
    # the target's data already moved aside: those writes cannot have reached it
    assert syncplan.overtaken("dump", ["record_newest", "keep_datadir"], "db01", "db02", st) is None
    assert syncplan.overtaken("online", ["recover_online"], "db01", "db02", st) is None
    # both up (writes reached both), or the target down: nothing overtaken
    assert syncplan.overtaken("dump", [], "db01", "db02", {"db01": "up", "db02": "up"}) is None
    assert syncplan.overtaken("dump", [], "db01", "db02", {"db01": "up", "db02": "down"}) is None

    # a source pgpool does not list is no evidence of writes to the target during a resync
    assert syncplan.overtaken("dump", [], "db01", "db02", {"db02": "up"}) is None


def test_overtaken_words_say_which_data_the_target_serves():
    """An online resync cut after its 1st stage moved the target's data aside (chaos seed 51,
    the power cut a second later): the target serves the promoted copy, not its own data."""
    from hatasks import syncplan

    st = {"db01": "down", "db02": "up"}
    own = syncplan.overtaken("dump", ["record_newest"], "db01", "db02", st)
    assert "db02's data is still its own" in own
    moved = syncplan.overtaken("online", ["record_newest", "install_recovery"], "db01", "db02", st,
                               moved="/var/lib/pgsql/data.2026")
    assert "still its own" not in moved
    assert "recovery's copy" in moved and "/var/lib/pgsql/data.2026" in moved
    # the scripts listed nothing since the plan: the 1st stage never moved it
    assert "still its own" in syncplan.overtaken("online", ["record_newest"], "db01", "db02", st,
                                                  moved=False)
    # not read: neither claim
    unread = syncplan.overtaken("online", ["record_newest"], "db01", "db02", st)
    assert "still its own" not in unread and "either its own data or" in unread


def test_target_alone_is_one_predicate_for_the_resync_and_its_resume():
    from hatasks import syncplan

    alone = {"db01": "down", "db02": "up"}
    assert syncplan.target_alone(alone, "db01", "db02")
    assert not syncplan.target_alone({"db01": "up", "db02": "up"}, "db01", "db02")
    assert not syncplan.target_alone({"db01": "up", "db02": "down"}, "db01", "db02")
    # before a resync, a source pgpool does not list leaves the target taking every write
    assert syncplan.target_alone({"db02": "up"}, "db01", "db02")
    assert not syncplan.target_alone({"db02": "up"}, "db01", "db02", unlisted_source=False)


def test_stack_down_is_the_heartbeat_condition_for_rules_and_states():
    from hatasks import rules, states

    assert rules.stack_down({"ssh": True, "crm": None, "crm_error": "connection refused"})
    assert not rules.stack_down({"ssh": False, "crm": None})
    assert not rules.stack_down({"ssh": True, "crm": {"nodes": {}}})
    facts = {"order": ["db01", "db02"],
             "hosts": {"db01": {"ssh": True, "crm": {"nodes": {}}},
                       "db02": {"ssh": True, "crm": None, "crm_error": "not connected"}}}
    assert states.stack_down_peers(facts, "db01") == ["db02"]
    assert states.stack_down_peers(facts, "db02") == []


def test_a_resync_overtaken_by_writes_to_its_target_is_rolled_back_never_resumed():
    """Chaos seed 41 step 7: db01, the source, lost power in the resync's stop_pgpool step;
    Pacemaker started pgpool on db02 with db01 down and clients wrote to db02. Resuming would
    have rebuilt db02 from db01 without them (29 acknowledged writes left the cluster)."""
    pool = {"reachable": True, "error": None, "degenerated": True, "newest": "db02", "via": "db02",
            "backends": [{"node_id": 0, "host": "db01", "status": "down"},
                         {"node_id": 1, "host": "db02", "status": "up"}]}
    rs = dict(RESYNC, done=["plan", "record_newest"], last="record_newest",
              overtaken="pgpool serves from db02 alone (db01 is down in SHOW pool_nodes) ...")
    d = states.diagnose_db(facts(view(group_node="db02"), pool, resync=rs))
    assert ["resync-overtaken", "db02"] in d["problems"]
    tasks = [s["task"] for s in d["steps"]]
    assert "sync.resume" not in tasks and "inv sync.rollback" in d["plan"]
    roll = next(s for s in d["steps"] if s["task"] == "sync.rollback")
    assert not roll.get("conditional") and "never sync.resume" in roll["why"]
    assert any("pgpool serves from db02 alone" in e for e in d["evidence"])


def test_no_quorum_from_a_peer_whose_stack_is_down_is_repaired_not_a_human():
    """Chaos seed 11 step 40 (no fencing): lb01's stack killed, lb02 power-cycled: lb02 boots
    alone and waits for its peer (two_node, wait_for_all): no quorum. lb01 answers ssh with its
    stack down: hb.start lb01 brings the quorum back; lb.recover used to stop at a manual step
    ("bring the other node back") and the lab was rebuilt."""
    v = view(nodes={"lb01": "offline", "lb02": "online"}, group_node=None,
             resources=[res("lb-vip", None), res("apache", None)], flags={"quorum": False})
    f = lb_facts(v, web={"serving": False, "http_code": None, "page_node": None})
    f["hosts"]["lb01"].update(crm=None, crm_error="crm_mon: Connection to cluster failed")
    d = states.diagnose_lb(f)
    assert ["no-quorum", "lb02"] in d["problems"]
    assert not any(s["task"] == "manual" for s in d["steps"]), d["plan"]
    assert "inv hb.start --host lb01" in d["plan"]
    # the peer does not answer at all: a human (power, interconnect), named for the LB cluster
    f["hosts"]["lb01"].update(ssh=False, ssh_error="timed out", crm_error=None)
    d = states.diagnose_lb(f)
    quorum = [s for s in d["steps"] if s["task"] == "manual" and "no quorum" in s["text"]]
    assert quorum and "run lb.recover again" in quorum[0]["text"]


def test_pgpool_stopped_is_started_where_the_vip_runs_when_its_own_node_is_gone():
    v = view(nodes={"db01": "offline", "db02": "online"}, group_node=None,
             resources=[res("db-vip", "db02"),
                        res("pgpool", None, managed=False, maintenance=True)])
    f = facts(v, DOWN)
    f["hosts"]["db01"].update(ssh=False, crm=None, ssh_error="timed out")
    d = states.diagnose_db(f)
    stopped = [p for p in d["problems"] if p[0] == "pgpool-stopped"]
    assert stopped == [["pgpool-stopped", "db02"]]
    assert "inv pgpool.start --host db02" in d["plan"]


def test_after_a_resync_that_left_its_source_detached_the_next_plan_rebuilds_it_from_the_target():
    """syncsteps.leave_source_detached: the resync ended done with its source detached; the
    next diagnosis sees pgpool degenerated with the target newest and rebuilds the old source
    from it (sync.resync proves first that the old source holds no write the target lacks)."""
    pool = {"reachable": True, "error": None, "degenerated": True, "newest": "db02", "via": "db01",
            "backends": [{"node_id": 0, "host": "db01", "status": "down"},
                         {"node_id": 1, "host": "db02", "status": "up"}]}
    d = states.diagnose_db(facts(view(), pool))
    assert d["problems"] == [["degenerated", "db01"]] and d["pattern"] != "healthy"
    rs = [s for s in d["steps"] if s["task"] == "sync.resync"]
    assert rs and (rs[0]["args"]["source"], rs[0]["args"]["target"]) == ("db02", "db01")
    assert not rs[0]["args"].get("force")  # the proof is not skipped
