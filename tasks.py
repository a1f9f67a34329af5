"""Entry point for ``inv``: the root collection of hatasks (see ``inv -l``)."""

from hatasks import cli
from hatasks.namespace import build
from lab import tasks as labtasks  # the lab: a tool of the checkout, not of the installed command

cli.install()  # bad command lines exit 2 with one line (hatasks/cli.py)
ns = build(lab=labtasks)
