"""db.carry_pool_view: the pgpool about to start on the destination of a move gets the
current backend view, not the stale pgpool_status of its last run (on the shared FakeRemote)."""

from hatasks import db


def test_carry_pool_view_writes_the_current_view_into_the_destination(ctx, fake, capsys):
    c = db.checks.cluster(ctx, None, "db")
    fake.on("pgpool_status", (0, "written /var/log/postgresql/pgpool_status\n"))
    data = {"backends": [{"node_id": 1, "host": "db02", "status": "up"},
                         {"node_id": 0, "host": "db01", "status": "down"}]}
    db.carry_pool_view(ctx, c, "db02", data)
    (call,) = [x for x in fake.calls if "pgpool_status" in x.command]
    assert call.host == "db02" and call.user == "postgres"
    assert r"printf '%s\n' down up >" in call.command      # node-id order: 0 down, 1 up
    assert "ss -Hltn" in call.command                    # never under a running pgpool
    assert "db02: pgpool_status set to the current view (down, up)" in capsys.readouterr().out
    db.carry_pool_view(ctx, c, "db02", None)             # pgpool did not answer: nothing
    assert len([x for x in fake.calls if "pgpool_status" in x.command]) == 1
