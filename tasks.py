"""Entry point for ``inv``: the root collection of hatasks (see ``inv -l``).

Only the parts the command line needs are imported (``namespace.for_checkout``): ``inv
status`` imports neither the other task modules nor the lab; ``inv -l``, ``--help``,
``--complete`` and ``inv`` alone get the whole collection, the lab included."""

import sys

# invoke writes no bytecode cache unless --write-pyc, to keep tasks.pyc out of a project; but
# then every `inv` compiled the whole hatasks package again (about half of its start-up CPU
# time). The package is cached as the interpreter would (PYTHONDONTWRITEBYTECODE).
sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)

from hatasks import cli  # noqa: E402  (after the line above)
from hatasks.namespace import for_checkout  # noqa: E402

cli.install()  # bad command lines exit 2 with one line (hatasks/cli.py)
# `inv` (invoke.main.program) parsed its own options before importing this file; the lab
# (lab.tasks) is a tool of the checkout, not of the installed command
ns = for_checkout(getattr(sys.modules.get("invoke.main"), "program", None), "lab.tasks")
