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
        # default output format of read-only tasks: table | json
        "format": "table",
    }
}
