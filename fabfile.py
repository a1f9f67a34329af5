"""Entry point for ``fab``: the same collections as ``inv`` (``fab -l``), the same configuration
(``invoke.yaml``, ``INVOKE_HATASKS_*``), and ``fab -H HOST TASK`` for the tasks that act on one
host (hatasks/base.py). Like ``tasks.py``, only the parts the command line needs are imported."""

import sys

sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)  # as in tasks.py

from hatasks import base, cli  # noqa: E402
from hatasks.namespace import for_checkout  # noqa: E402
from hatasks.program import follow_invoke  # noqa: E402

cli.install()  # bad command lines exit 2 with one line (hatasks/cli.py)
# `fab` (fabric.main.program) built its configuration and parsed -H before importing this file
_fab = getattr(sys.modules.get("fabric.main"), "program", None)
follow_invoke(getattr(_fab, "config", None))
_hosts = getattr(getattr(getattr(_fab, "args", None), "hosts", None), "value", None)
base.hosts_from_fab(bool(_hosts))
ns = for_checkout(_fab, "lab.tasks")  # the lab: a tool of the checkout, not of the installed one
