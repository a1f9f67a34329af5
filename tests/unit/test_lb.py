"""lb scenarios without a cluster: the failback policy read from the CIB, refusals before any
command, input validation. State comes from patched hb.crm_status; no ssh may run."""

import pathlib

import invoke
import pytest

from hatasks import hb, lb, remote
from hatasks.errors import HaError, UsageError

ROOT = pathlib.Path(__file__).resolve().parents[2]

# the lab's CIB sections (cibadmin --query --scope constraints / rsc_defaults), LB and DB
LB_CONSTRAINTS = ('<constraints><rsc_location id="loc-grp-apache-lb01" rsc="grp-apache" '
                  'node="lb01" score="100"/></constraints>')
LB_DEFAULTS = ('<rsc_defaults><meta_attributes id="rsc-options"><nvpair id="rsc-options-'
               'resource-stickiness" name="resource-stickiness" value="0"/></meta_attributes>'
               '</rsc_defaults>')
DB_CONSTRAINTS = ('<constraints><rsc_location id="loc-grp-pgpool-db01" rsc="grp-pgpool" '
                  'node="db01" score="50"/></constraints>')
DB_DEFAULTS = LB_DEFAULTS.replace('value="0"', 'value="100"')


@pytest.fixture
def ctx(tmp_path):
    return invoke.Context(config=invoke.Config(overrides={"hatasks": {
        "inventory": str(ROOT / "hosts.ini"), "state_dir": str(tmp_path / "state")}}))


@pytest.fixture(autouse=True)
def no_ssh(mocker):
    mocker.patch.object(remote, "run", side_effect=AssertionError("unexpected remote command"))


def test_lb_policy_fails_back_automatically():
    p = lb.parse_policy(LB_CONSTRAINTS, LB_DEFAULTS, "grp-apache")
    assert p == {"preferred": "lb01", "score": 100, "stickiness": 0, "automatic": True}


def test_db_policy_does_not_fail_back():
    p = lb.parse_policy(DB_CONSTRAINTS, DB_DEFAULTS, "grp-pgpool")
    assert p == {"preferred": "db01", "score": 50, "stickiness": 100, "automatic": False}


def test_policy_other_group_infinity_and_garbage():
    xml = ('<constraints><rsc_location id="a" rsc="other" node="lb02" score="INFINITY"/>'
           '<rsc_location id="b" rsc="grp-apache" node="lb02" score="INFINITY"/>'
           '<rsc_location id="c" rsc="grp-apache" node="lb01" score="-INFINITY"/></constraints>')
    p = lb.parse_policy(xml, "not xml", "grp-apache")
    assert (p["preferred"], p["score"], p["stickiness"], p["automatic"]) == \
        ("lb02", 1000000, 0, True)
    assert lb.parse_policy("", "", "grp-apache")["preferred"] is None
    assert lb.parse_policy("", "", "grp-apache")["automatic"] is False


def crm_state(lb01="online", lb02="online", group_on="lb01"):
    return {"cluster": "lb", "read_on": "lb02", "unanswered": {},
            "nodes": [{"name": "lb01", "state": lb01}, {"name": "lb02", "state": lb02}],
            "resources": [{"id": r, "group": "grp-apache", "node": group_on, "nodes": [group_on],
                           "role": "Started"} for r in ("lb-vip", "apache")],
            "failed_actions": []}


@pytest.mark.parametrize("call,msg", [
    (lambda c: lb.failover_step(c, from_="db01"), "not a host of the lb cluster"),
    (lambda c: lb.failover_step(c, from_="lb9"), "unknown host"),
    (lambda c: lb.failback_step(c, to="lb01 ; id"), "not allowed"),
    (lambda c: lb.failback_step(c, timeout=-1), "--timeout must be greater than 0"),
    (lambda c: lb.recover_step(c, cluster="db"), "is a db cluster, not a lb cluster"),
])
def test_bad_input_is_refused_before_any_command(ctx, mocker, call, msg):
    crm = mocker.patch.object(hb, "crm_status", side_effect=AssertionError("read state"))
    with pytest.raises(UsageError) as exc:
        call(ctx)
    assert msg in exc.value.message
    crm.assert_not_called()


def test_failover_refuses_without_another_online_node(ctx, mocker):
    mocker.patch.object(hb, "crm_status", return_value=crm_state(lb02="standby"))
    standby = mocker.patch.object(hb, "standby_step")
    with pytest.raises(HaError) as exc:
        lb.failover_step(ctx, yes=True)
    assert "no other LB node is online (lb02 standby)" in exc.value.message
    standby.assert_not_called()


def test_failback_refuses_with_a_node_offline(ctx, mocker):
    mocker.patch.object(hb, "crm_status", return_value=crm_state(lb01="offline", group_on="lb02"))
    online = mocker.patch.object(hb, "online_step")
    with pytest.raises(HaError) as exc:
        lb.failback_step(ctx, yes=True)
    assert exc.value.code == HaError.STATE
    assert "lb01 is OFFLINE" in exc.value.message
    online.assert_not_called()


def test_failback_brings_the_standby_node_online_and_expects_the_preferred_node(ctx, mocker):
    mocker.patch.object(hb, "crm_status", return_value=crm_state(lb01="standby", group_on="lb02"))
    mocker.patch.object(lb, "read_policy", return_value=lb.parse_policy(LB_CONSTRAINTS, LB_DEFAULTS,
                                                                        "grp-apache"))
    online = mocker.patch.object(hb, "online_step")
    seen = {}

    def wait_for(ctx_, cluster, check, timeout, expected, **kw):
        seen["expected"] = expected
        assert check(crm_state(group_on="lb01")) is True
        assert check(crm_state(group_on="lb02")) is False
        return crm_state(group_on="lb01")

    mocker.patch.object(hb, "wait_for", side_effect=wait_for)
    mocker.patch.object(lb, "_serving", return_value={"page_node": "lb01", "http_code": 200})
    lb.failback_step(ctx, yes=True)
    online.assert_called_once()
    assert online.call_args.args[1] == "lb01"
    assert "back on lb01 (automatic failback)" in seen["expected"]


def test_serving_without_an_expected_node_accepts_any_page(ctx, mocker):
    page = {"serving": True, "http_code": 200, "page_node": "lb01"}
    mocker.patch.object(lb, "fetch_page", return_value=page)
    c = remote.inventory(ctx).cluster("lb")
    assert lb._serving(ctx, c, None, 1) is page
    assert lb._serving(ctx, c, "lb01", 1) is page
    with pytest.raises(HaError) as exc:
        lb._serving(ctx, c, "lb02", 0.3)
    assert exc.value.code == HaError.NOT_CONVERGED
