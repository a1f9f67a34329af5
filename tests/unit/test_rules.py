"""The pure pieces of the diagnosis rules: plan steps as data and how they render, the ranking
and evidence helpers both clusters share, and the failback policy read from the CIB."""

import pytest

from hatasks import rules

# the lab's CIB sections (cibadmin --query --scope constraints / rsc_defaults), LB and DB
LB_CONSTRAINTS = ('<constraints><rsc_location id="loc-grp-apache-lb01" rsc="grp-apache" '
                  'node="lb01" score="100"/></constraints>')
LB_DEFAULTS = ('<rsc_defaults><meta_attributes id="rsc-options"><nvpair id="rsc-options-'
               'resource-stickiness" name="resource-stickiness" value="0"/></meta_attributes>'
               '</rsc_defaults>')
DB_CONSTRAINTS = ('<constraints><rsc_location id="loc-grp-pgpool-db01" rsc="grp-pgpool" '
                  'node="db01" score="50"/></constraints>')
DB_DEFAULTS = LB_DEFAULTS.replace('value="0"', 'value="100"')


def test_render_quotes_values_and_labels_optional_steps():
    step = rules.step("sync.resync", "why", source="db 1", target="db02", method="dump",
                      force=False)
    assert rules.render(step) == "inv sync.resync --source 'db 1' --target db02 --method dump"
    step = rules.step("db.failback", "why", to="db01")
    step["label"] = "optional:"
    assert rules.render(step) == "optional: inv db.failback --to db01"
    assert rules.render(rules.manual("power on db01")) == "manual: power on db01"
    assert rules.render(rules.step("sync.resync", "w", force=True)) == "inv sync.resync --force"
    assert rules.render(rules.wait("grp-apache back on lb01", "w", node="lb01")) == \
        "wait: grp-apache back on lb01"


def test_steps_are_data():
    assert rules.step("hb.start", "why", host="db01") == \
        {"task": "hb.start", "args": {"host": "db01"}, "why": "why"}
    assert rules.step("hb.start", "why", conditional=True, host="db01")["conditional"] is True
    human = rules.manual("fix it", conditional=True)
    assert (human["task"], human["args"], human["conditional"]) == ("manual", {}, True)


def test_rank_follows_the_runbook_table_and_keeps_detection_order():
    problems = [("degenerated", "db02", ["a"]), ("postgres", "db02", ["b"]),
                ("power", "db02", ["c"]), ("postgres", "db01", ["d"])]
    ranked = rules.rank(problems, rules.DB_PATTERNS)
    assert [(p[0], p[1]) for p in ranked] == [("power", "db02"), ("postgres", "db02"),
                                               ("postgres", "db01"), ("degenerated", "db02")]
    assert problems[0][0] == "degenerated"  # the input is left as it was


def test_merged_evidence_keeps_each_line_once_in_rank_order():
    problems = [("power", "db02", ["ssh fails", "db01 sees db02 OFFLINE"]),
                ("degenerated", "db02", ["db01 sees db02 OFFLINE", "backend 1 down"])]
    assert rules.merged_evidence(problems) == ["ssh fails", "db01 sees db02 OFFLINE",
                                               "backend 1 down"]


def test_result_renders_the_plan_and_keeps_pattern_and_host_of_problems():
    steps = [rules.step("hb.start", "w", host="db01")]
    d = rules.result("heartbeat", "db01", ["e"], steps, None, [("heartbeat", "db01", ["e"])])
    assert d["plan"] == [rules.render(steps[0])]
    assert d["problems"] == [["heartbeat", "db01"]]


def test_lb_policy_fails_back_automatically():
    p = rules.parse_policy(LB_CONSTRAINTS, LB_DEFAULTS, "grp-apache")
    assert p == {"preferred": "lb01", "score": 100, "stickiness": 0, "automatic": True}


def test_db_policy_does_not_fail_back():
    p = rules.parse_policy(DB_CONSTRAINTS, DB_DEFAULTS, "grp-pgpool")
    assert p == {"preferred": "db01", "score": 50, "stickiness": 100, "automatic": False}


@pytest.mark.parametrize("garbage", ["not xml", ""])
def test_policy_other_group_infinity_and_garbage(garbage):
    xml = ('<constraints><rsc_location id="a" rsc="other" node="lb02" score="INFINITY"/>'
           '<rsc_location id="b" rsc="grp-apache" node="lb02" score="INFINITY"/>'
           '<rsc_location id="c" rsc="grp-apache" node="lb01" score="-INFINITY"/></constraints>')
    p = rules.parse_policy(xml, garbage, "grp-apache")
    assert (p["preferred"], p["score"], p["stickiness"], p["automatic"]) == \
        ("lb02", 1000000, 0, True)
    assert rules.parse_policy("", "", "grp-apache")["preferred"] is None
    assert rules.parse_policy("", "", "grp-apache")["automatic"] is False
