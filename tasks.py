"""Entry point for ``inv``: the root collection of hatasks (see ``inv -l``)."""

from hatasks import cli
from hatasks.namespace import build

cli.install()  # bad command lines exit 2 with one line (hatasks/cli.py)
ns = build()
