"""Input validation shared by every task: numbers, ports, stop modes, DB hosts.

Each check raises UsageError (naming the option) before anything runs, and returns the
value in the type the caller goes on with.
"""

from hatasks import remote
from hatasks.errors import UsageError

#: pg_ctl -m and pgpool -m stop modes
MODES = ("smart", "fast", "immediate")


def positive(name, value, cast=float, whole_to_int=False):
    """``cast(value)`` if it is greater than 0, else UsageError naming ``--name``.

    With ``whole_to_int`` a whole number comes back as an int (2.0 -> 2)."""
    try:
        value = cast(value)
    except (TypeError, ValueError):
        raise UsageError(f"--{name} must be a number, not {value!r}") from None
    if value <= 0:
        raise UsageError(f"--{name} must be greater than 0, not {value}")
    if whole_to_int and float(value).is_integer():
        return int(value)
    return value


def port(value, option="port"):
    """None (or "") stays None; else an int in 1..65535 or UsageError."""
    if value is None or value == "":
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise UsageError(f"--{option} must be a number, not {value!r}") from None
    if not 1 <= number <= 65535:
        raise UsageError(f"--{option} {number} is out of range (1-65535)")
    return number


def mode(value):
    """One of MODES (pg_ctl / pgpool stop mode) or UsageError."""
    if value not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {value!r}")
    return value


def db_host(ctx, name, option="host", noun="DB host", cluster_note="cluster {}"):
    """Validate a --host naming a host of a DB cluster: (Host, Inventory).

    ``noun`` and ``cluster_note`` word the error for the calling module, e.g.
    "--host lb01: not a DB host (cluster lb); DB hosts: db01, db02"."""
    remote.check_value(option, name)
    inv = remote.inventory(ctx)
    host = inv.host(name)
    if not host.cluster or inv.cluster(host.cluster).kind != "db":
        dbs = [h.name for c in inv.clusters_of_kind("db") for h in c.hosts]
        raise UsageError(
            f"--{option} {name}: not a {noun} ({cluster_note.format(host.cluster)}); "
            f"DB hosts: {', '.join(dbs) or 'none'}"
        )
    return host, inv
