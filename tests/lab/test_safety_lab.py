"""Never lose an acknowledged write, on the real lab (issue 10). With fencing (lab.up --fencing
on, the last test): a cable cut on either DB node, only the group's side acknowledges writes, the
other node is fenced, and the fenced node is diagnosed `fenced`. Without fencing:

- swapped pgpool_node_id in the inventory: pgpool.switch refused naming both, nothing detached;
- stale attach: refused; with --force journaled stale-attach (pgpool.status not in sync) until
  a rebuild proves the backends equal;
- split brain: db02's cable pulled, db02's side runs its own pgpool and takes a write (s1),
  db01's side another (s2); after the cable is back db.recover refuses naming the split brain,
  both writes still exist; db.recover --source db01 then sync.salvage: both on both backends.

The checks read the backends with psql directly (lab.core), not through hatasks.
"""

import json
import subprocess
import time
import uuid

import pytest

from lab.core import APP_DB, Lab

from .conftest import INSTANCE, ROOT, Inv, inventory_path

pytestmark = pytest.mark.lab

LAB = Lab(INSTANCE, out=lambda *a, **k: None)
DDL = "CREATE TABLE IF NOT EXISTS hatasks_safety (id text PRIMARY KEY, v text NOT NULL);"


def rows_on(host, tag):
    proc = LAB.psql(LAB.ip(host), 5432, f"SELECT v FROM hatasks_safety WHERE id LIKE '{tag}%' "
                                        f"ORDER BY v;", db=APP_DB)
    return proc.stdout.split()


def pool_status(inv):
    """pgpool.status as JSON (it exits 3 while pgpool is degenerated: the document is read
    either way)."""
    proc = inv("pgpool.status", "--format", "json", check=False)
    assert proc.returncode in (0, 3), proc.stderr
    return json.loads(proc.stdout)


def history(inv, event):
    recs = json.loads(inv("history", "--format", "json", "--limit", "0").stdout)
    return [r for r in recs if r.get("event") == event]


def wait(what, fn, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout}s: {what}")
        time.sleep(1)


def both_up_and_equal(inv):
    data = pool_status(inv)
    for b in data["backends"]:
        if b["status"] != "up":
            if inv("pgpool.attach", "--node", b["host"], "--yes", check=False).returncode != 0:
                inv("pgpool.recover", "--node", b["host"], "--yes", "--force", timeout=600)
    if inv("pg.compare", check=False).returncode != 0:
        inv("pgpool.recover", "--node", "db02", "--yes", "--force", timeout=600)


@pytest.fixture
def table(inv):
    LAB.psql(LAB.db_vip, 9999, DDL, db=APP_DB)
    tag = uuid.uuid4().hex[:10]
    yield tag
    both_up_and_equal(inv)
    LAB.psql(LAB.db_vip, 9999, f"DELETE FROM hatasks_safety WHERE id LIKE '{tag}%';", db=APP_DB)


def test_swapped_node_ids_refused_nothing_detached(inv):
    real = inventory_path()
    text = real.read_text()
    assert "pgpool_node_id=0" in text and "pgpool_node_id=1" in text
    swapped = real.with_name("hosts-swapped-ids.ini")
    swapped.write_text(text.replace("pgpool_node_id=0", "pgpool_node_id=X")
                       .replace("pgpool_node_id=1", "pgpool_node_id=0")
                       .replace("pgpool_node_id=X", "pgpool_node_id=1"))
    wrong = Inv(inv.state_dir)
    wrong.env["INVOKE_HATASKS_INVENTORY"] = str(swapped)
    try:
        res = wrong("pgpool.switch", "--node", "db02", "--yes", check=False)
    finally:
        swapped.unlink()
    assert res.returncode == 3, res.stdout + res.stderr
    assert "inventory: db02 is pgpool node 0; pgpool: node 0 is db01:5432" in res.stderr
    assert [b["status"] for b in pool_status(inv)["backends"]] == ["up", "up"]


def test_stale_attach_refused_forced_marked_until_rebuilt(inv, table):
    inv("pgpool.switch", "--node", "db02", "--yes")
    LAB.psql(LAB.db_vip, 9999, f"INSERT INTO hatasks_safety VALUES ('{table}-1', 'missed');",
             db=APP_DB)
    refused = inv("pgpool.attach", "--node", "db02", "--yes", check=False)
    assert refused.returncode == 7, refused.stdout + refused.stderr
    assert "refusing to attach db02" in refused.stderr
    assert [b["status"] for b in pool_status(inv)["backends"]] == ["up", "down"]

    forced = inv("pgpool.attach", "--node", "db02", "--force", "--yes")
    assert "attached WITHOUT resync" in forced.stderr
    data = pool_status(inv)
    assert [b["status"] for b in data["backends"]] == ["up", "up"]
    assert data["stale_attach"] == ["db02"]
    table_text = inv("pgpool.status", check=False).stdout
    assert "NOT in sync: db02 attached without resync" in table_text
    assert "all backends in sync" not in table_text

    # the rebuild proves db02 holds nothing db01 lacks (it only missed a write), then rebuilds
    rec = inv("pgpool.recover", "--node", "db02", "--yes", timeout=600)
    assert "proof: db02 holds no write db01 lacks" in rec.stdout
    assert pool_status(inv)["stale_attach"] == []
    assert rows_on("db02", table) == ["missed"]


def test_split_brain_refused_both_writes_kept_then_chosen_and_salvaged(inv, table):
    """No fencing: each side of the cut runs its own pgpool and acknowledges a write."""
    LAB.psql(LAB.db_vip, 9999, f"INSERT INTO hatasks_safety VALUES ('{table}-0', 'before');",
             db=APP_DB)
    inv("lab.fault", "--host", "db02", "--kind", "network")
    try:
        # db02 alone starts the DB group (VIP + pgpool), which detaches the unreachable db01
        def db02_has_group():
            mon = LAB.crm_mon("db02")
            return mon["resources"].get("pgpool") == ["db02"]
        wait("db02 runs its own pgpool", db02_has_group)

        def write_on_db02():
            proc = LAB.hrun("db02", f"PGPASSFILE={LAB.pgpass} PGCONNECT_TIMEOUT=5 psql -X -q "
                                    f"-h {LAB.db_vip} -p 9999 -U postgres -d {APP_DB} -c "
                                    f"\"INSERT INTO hatasks_safety VALUES ('{table}-1', 's1')\"",
                            check=False, timeout=40)
            return proc.returncode == 0 or "duplicate key" in proc.stderr
        wait("s1 acknowledged by db02's pgpool", write_on_db02, timeout=120)

        def write_on_db01():
            proc = LAB.psql(LAB.db_vip, 9999, f"INSERT INTO hatasks_safety VALUES "
                                              f"('{table}-2', 's2');", db=APP_DB, check=False)
            return proc.returncode == 0 or "duplicate key" in proc.stderr
        wait("s2 acknowledged by db01's pgpool", write_on_db01, timeout=120)
    finally:
        inv("lab.heal", "--host", "db02")

    refused = inv("db.recover", "--yes", check=False, timeout=900)
    assert refused.returncode == 3, refused.stdout[-3000:] + refused.stderr
    assert "split brain" in refused.stderr
    # both acknowledged writes still exist, each on its own side
    assert "s1" in rows_on("db02", table) and "s2" in rows_on("db01", table)

    chosen = inv("db.recover", "--yes", "--source", "db01", check=False, timeout=900)
    assert chosen.returncode == 0, chosen.stdout[-3000:] + chosen.stderr
    kept = [r for r in history(inv, "salvage") if r["backend"] == "db02"]
    assert kept, "no salvage file of db02's writes was journaled"
    assert "s1" in open(kept[-1]["local"]).read()
    inv("sync.salvage", "--file", kept[-1]["local"], "--yes")
    for h in ("db01", "db02"):
        assert rows_on(h, table) == ["before", "s1", "s2"], h


def test_rebuild_refused_when_the_target_took_writes(inv, table):
    """The proof itself, deterministically: db02 detached (its position journaled), s2 written
    through pgpool (db01 only), s1 written on db02 directly (as a split brain's other side
    would). db.recover plans a resync of db02 from db01: refused, exit 3, naming the table and
    the key; after --source db01 and the salvage, both writes on both backends."""
    inv("pgpool.switch", "--node", "db02", "--yes")
    LAB.psql(LAB.db_vip, 9999, f"INSERT INTO hatasks_safety VALUES ('{table}-2', 's2');",
             db=APP_DB)
    LAB.psql(LAB.ip("db02"), 5432, f"INSERT INTO hatasks_safety VALUES ('{table}-1', 's1');",
             db=APP_DB)
    refused = inv("db.recover", "--yes", check=False, timeout=900)
    assert refused.returncode == 3, refused.stdout[-3000:] + refused.stderr
    assert "split brain: refusing to rebuild db02 from db01: db02 holds writes db01 lacks: " \
           f'GYOM_DB public.hatasks_safety by id: 1 row(s) only on db02, e.g. ["{table}-1"]' \
        in refused.stderr
    assert rows_on("db02", table) == ["s1"] and rows_on("db01", table) == ["s2"]
    kept = [r for r in history(inv, "salvage") if r["backend"] == "db02"]
    assert kept and kept[-1]["remote"].endswith(".sql")
    inv("db.recover", "--yes", "--source", "db01", timeout=900)
    inv("sync.salvage", "--file", kept[-1]["local"], "--yes")
    for h in ("db01", "db02"):
        assert rows_on(h, table) == ["s1", "s2"], h


# --------------------------------------------------------------------------- with fencing


class Writer:
    """Writes (tag, n) rows in a loop from one side of a cut: from the operator machine through
    the DB VIP (side "net"), or from inside a DB host through the VIP it sees (side HOST).
    Each acknowledged write is kept with its time."""

    def __init__(self, tag, side):
        import threading
        self.tag, self.side, self.n, self.acked = tag, side, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def write_once(self):
        t0 = time.monotonic()
        self.n += 1
        row = f"('{self.tag}-{self.side}-{self.n}', '{self.side}')"
        sql = f"INSERT INTO hatasks_safety VALUES {row};"
        if self.side == "net":
            proc = LAB.psql(LAB.db_vip, 9999, sql, db=APP_DB, check=False, timeout=15)
        else:
            proc = LAB.hrun(self.side, f"PGPASSFILE={LAB.pgpass} PGCONNECT_TIMEOUT=3 psql -X -q "
                                       f"-h {LAB.db_vip} -p 9999 -U postgres -d {APP_DB} -c "
                                       f"\"{sql}\"", check=False, timeout=15)
        if proc.returncode == 0:   # (sent at, acknowledged at, key)
            self.acked.append((t0, time.monotonic(), f"{self.tag}-{self.side}-{self.n}"))

    def loop(self):
        while not self.stop.is_set():
            try:
                self.write_once()
            except Exception:   # a host powered off under the writer: not acknowledged
                pass
            time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)


def ipmi_power(host):
    proc = subprocess.run([str(ROOT / "lab" / "bin" / "ipmi-power"), "--lab", str(INSTANCE), host],
                          capture_output=True, text=True, timeout=30)
    return {0: "on", 1: "off"}.get(proc.returncode)


def group_holder():
    return LAB.crm_mon("db01" if LAB.pid1("db01") else "db02")["resources"]["pgpool"][0]


def cut_and_recover(inv, cut, before_heal=None):
    """One cut of CUT's cable with a writer on each side. The node holding the DB group wins
    the fencing race (priority-fencing-delay): the other node is fenced, whichever was cut.
    BEFORE_HEAL(fenced node, holder) runs while the fenced node is still off.
    Returns (the fenced node, the count of writes acknowledged after the cut by side)."""
    holder = group_holder()
    fenced = "db02" if holder == "db01" else "db01"
    # the side that reaches the group's node: the operator's network when the idle node was
    # cut, the group's node itself when its own cable was pulled
    holder_side = "net" if cut == fenced else holder
    tag = uuid.uuid4().hex[:10]
    t0 = time.monotonic()
    with Writer(tag, "net") as outside, Writer(tag, cut) as inside:
        time.sleep(3)
        inv("lab.fault", "--host", cut, "--kind", "network")
        t_cut = time.monotonic()   # the cable is out: a write sent from now on is "after"
        wait(f"{fenced} fenced (power off through its BMC)",
             lambda: ipmi_power(fenced) == "off", timeout=60)
        t_off = time.monotonic()
        # the holder's side acknowledges writes again without its peer (a few, then stop)
        side = outside if holder_side == "net" else inside
        wait(f"{holder_side} acknowledges writes after {fenced} is off",
             lambda: len([1 for t, _, _ in side.acked if t > t_off]) >= 3, timeout=60)
    assert ipmi_power(holder) == "on", f"{holder} held the group and was fenced too"
    after = {w.side: [k for t, _, k in w.acked if t > t_cut] for w in (outside, inside)}
    sides = [s for s, keys in after.items() if keys]
    assert sides == [holder_side], f"cut of {cut}: writes acknowledged after the cut: {after}"
    print(f"cut {cut}: {fenced} off {t_off - t_cut:.1f}s after the cut")
    if cut != fenced:   # the holder's cable first: the operator reaches the cluster again
        inv("lab.heal", "--host", cut, timeout=300)
    if before_heal:
        before_heal(fenced, holder)
    inv("lab.heal", "--host", fenced, timeout=300)
    assert ipmi_power(fenced) == "on"
    # the fenced node took no write: its rebuild is proved safe, no salvage detour
    rec = inv("db.recover", "--yes", check=False, timeout=900)
    assert rec.returncode == 0, rec.stdout[-3000:] + rec.stderr
    assert not [r for r in history(inv, "salvage") if r.get("backend") == fenced
                and tag in open(r["local"]).read()]
    acked = sorted(k for w in (outside, inside) for _, _, k in w.acked)
    for h in ("db01", "db02"):
        proc = LAB.psql(LAB.ip(h), 5432, f"SELECT id FROM hatasks_safety WHERE id LIKE "
                                         f"'{tag}%';", db=APP_DB)
        missing = sorted(set(acked) - set(proc.stdout.split()))
        assert not missing, f"acknowledged writes missing on {h} after the cut of {cut}: {missing}"
    print(f"cut {cut}: cycle {time.monotonic() - t0:.1f}s")
    return fenced, {s: len(k) for s, k in after.items()}


def fenced_in_the_model(inv, node, by):
    """While NODE is off, fenced by BY: hb.status shows the devices and the event, db.diagnose
    names it fenced (by whom), db.recover stops at the power-on (a human's step)."""
    fen = json.loads(inv("hb.status", "--cluster", "db", "--format", "json",
                         check=False).stdout)["views"]["db"]["fencing"]
    assert fen["enabled"] is True and fen["risk"] is None
    assert f"fence-{node}" in [d["id"] for d in fen["devices"]]
    last = fen["events"][-1]
    assert (last["target"], last["status"], last["delegate"]) == (node, "success", by), fen
    d = json.loads(inv("db.diagnose", "--format", "json", check=False).stdout)
    assert (d["pattern"], d["host"]) == ("fenced", node), d
    assert [e for e in d["evidence"] if e.startswith(f"fencing history: {node} fenced (off) "
                                                     f"by {by} at ")], d["evidence"]
    stop = inv("db.recover", "--yes", check=False, timeout=300)
    assert stop.returncode == 3 and f"{node} was fenced" in stop.stderr, stop.stderr


def test_fenced_cut_one_side_acknowledges_every_write_survives(inv):
    """Fencing on (BMCs on their own management network, priority-fencing-delay with the DB
    group's priority): pull a DB node's cable while a writer runs on each side, first the idle
    node's, then the group's. Each time the group's node wins the fencing race: the other node
    is fenced (powered off through its BMC) before it can take over, so only the group's side
    acknowledges writes after the cut; after lab.heal and db.recover (no salvage: the fenced
    node took no write) every acknowledged write is on both backends. While it is off the
    second time, hb.status shows the fencing and db.diagnose names the node fenced."""
    inv("lab.up", "--fencing", "on", timeout=900)
    try:
        LAB.psql(LAB.db_vip, 9999, DDL, db=APP_DB)
        holder = group_holder()
        idle = "db02" if holder == "db01" else "db01"
        fenced, acked = cut_and_recover(inv, idle)
        print(f"cut {idle} (idle): {fenced} fenced, acknowledged after the cut: {acked}")
        assert fenced == idle
        fenced, acked = cut_and_recover(inv, holder, before_heal=lambda n, by: fenced_in_the_model(
            inv, n, by))
        print(f"cut {holder} (group): {fenced} fenced, acknowledged after the cut: {acked}")
        assert fenced == idle and group_holder() == holder
        data = json.loads(inv("status", "--format", "json").stdout)
        assert data["healthy"] is True and data["warnings"] == []
    finally:
        inv("lab.up", timeout=900)   # the unfenced lab the other tests expect
    unfenced = json.loads(inv("status", "--format", "json").stdout)
    assert unfenced["healthy"] is True
    assert [w for w in unfenced["warnings"] if "split brain" in w and w.startswith("db: ")]
