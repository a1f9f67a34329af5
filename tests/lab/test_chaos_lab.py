"""The chaos rehearsal on the real lab: a short fixed-seed run (`inv lab.chaos`), and its --dry.

The CI seed and kinds are chosen so that the run covers each invariant against what hatasks
does after a fault, an interrupted task and an operator's action (see docs/chaos.md): the test
is green only when every invariant holds and no acknowledged write is lost.
"""

import re

import pytest

from lab.chaos_plan import describe, draw_plan
from lab.core import Lab

from .conftest import INSTANCE

pytestmark = pytest.mark.lab

LAB = Lab(INSTANCE, out=lambda *a, **k: None)

CI_SEED = 3
CI_STEPS = 3
CI_KINDS = "fault,interrupt,operator"
LAST = re.compile(r"^chaos: (\d+) steps, (\d+) violations, (\d+) lost writes "
                  r"\((\d+) acknowledged\), seed (\d+)$")


def test_chaos_dry_prints_the_plan_and_changes_nothing(lab):
    before = LAB.problems()
    proc = lab("--dry", "lab.chaos", "--steps", "6", "--seed", str(CI_SEED))
    plan = draw_plan(CI_SEED, 6)
    lines = proc.stdout.strip().splitlines()
    assert [line.split(None, 3)[-1] for line in lines[:6]] == [describe(s) for s in plan]
    assert lines[-1] == f"[dry] plan of seed {CI_SEED}: 6 steps; nothing done"
    assert LAB.problems() == before == []


def test_chaos_short_run_keeps_every_invariant(lab):
    proc = lab("lab.chaos", "--steps", str(CI_STEPS), "--seed", str(CI_SEED), "--kinds", CI_KINDS,
               check=False, timeout=1500)
    lines = proc.stdout.strip().splitlines()
    m = LAST.match(lines[-1]) if lines else None
    assert m, f"no final line\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    steps, violations, lost, acked, seed = map(int, m.groups())
    assert (steps, seed) == (CI_STEPS, CI_SEED)
    assert acked > 0, "the workload wrote nothing through the DB VIP"
    report = "\n".join(lines[-40:])
    assert violations == 0 and lost == 0, report
    assert proc.returncode == 0, report
    assert LAB.problems() == []
