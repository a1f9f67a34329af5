"""Entry point for ``fab``: the same collections as ``inv`` (``fab -l``), the same configuration
(``invoke.yaml``, ``INVOKE_HATASKS_*``), and ``fab -H HOST TASK`` for the tasks that act on one
host (hatasks/base.py)."""

import sys

from hatasks import cli
from hatasks.namespace import build
from hatasks.program import follow_invoke
from lab import tasks as labtasks  # the lab: a tool of the checkout, not of the installed command

cli.install()  # bad command lines exit 2 with one line (hatasks/cli.py)
# `fab` (fabric.main.program) built its configuration before importing this file
follow_invoke(getattr(getattr(sys.modules.get("fabric.main"), "program", None), "config", None))
ns = build(lab=labtasks)
