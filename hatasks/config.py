"""Defaults for the root collection's configuration (``ctx.config.hatasks``).

Settings resolve: task argument -> ``invoke.yaml`` / ``INVOKE_HATASKS_*`` env vars
-> these defaults. Per-host and per-cluster settings live in the inventory.
"""

DEFAULTS = {
    "hatasks": {
        # the inventory (Ansible INI); env: INVOKE_HATASKS_INVENTORY
        "inventory": "hosts.ini",
        # journal, operation locks, newest-data records; env: INVOKE_HATASKS_STATE_DIR
        "state_dir": ".hatasks",
        # seconds to wait for an ssh connection before naming the host as unreachable
        "connect_timeout": 10,
        # seconds a read-only command on a host may run (a host whose network is cut while
        # the command runs never answers: without a limit the task would hang)
        "probe_timeout": 300,
        # default output format of read-only tasks: table | json
        "format": "table",
        # keep the operation lock and the newest-data record in the cluster too (hatasks.lock);
        # env: INVOKE_HATASKS_CLUSTER_STATE=0 keeps both on this admin host only
        "cluster_state": True,
        # seconds a lock in the cluster lives unless its holder renews it (every lease/3)
        "lock_lease": 60,
        # folder on the cluster hosts for the lock and newest-data files (CIB unreachable)
        "lock_dir": "/var/lib/hatasks",
    }
}


def make_context(**settings):
    """An ``invoke.Context`` configured as ``inv`` would configure it (defaults, invoke.yaml,
    ``INVOKE_HATASKS_*`` env vars), for calling step functions from Python (benchmarks, scripts).
    ``settings`` override ``hatasks.*`` values."""
    import copy

    from invoke import Config, Context
    from invoke.config import merge_dicts

    defaults = merge_dicts(Config.global_defaults(), copy.deepcopy(DEFAULTS))
    config = Config(defaults=defaults, overrides={"hatasks": settings} if settings else None)
    config.load_system()
    config.load_user()
    config.load_project()
    config.load_shell_env()
    return Context(config=config)
