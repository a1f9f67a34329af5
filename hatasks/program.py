"""The installed ``hatasks`` command: an Invoke ``Program`` bundling the hatasks collection.

``pip install .`` puts ``hatasks`` on the PATH (``setup.cfg``'s console script
``hatasks.program:main``). It is ``inv`` with the hatasks tasks built in, usable from any
directory:

- its own configuration: ``/etc/hatasks.yaml``, ``~/.hatasks.yaml``, ``./hatasks.yaml`` (the
  directory it runs in), ``-f FILE``; environment variables ``HATASKS_*`` for hatasks' own
  settings (``HATASKS_INVENTORY``, ``HATASKS_STATE_DIR``, ``HATASKS_CONNECT_TIMEOUT``,
  ``HATASKS_FORMAT``) and for invoke's (``HATASKS_RUN_ECHO``...);
- ``--inventory FILE`` (overrides every other source of ``hatasks.inventory``);
- ``--version``; ``--print-completion-script bash|zsh|fish`` for shell completion;
- the task modules are imported only once the command line needs the collection, so
  ``hatasks --version`` and ``--print-completion-script`` import none, and ``hatasks
  hb.status`` only those ``hb`` needs (``namespace.build(only=...)``).

The lab's tasks (``lab.*``) are a development tool of the checkout: they appear with ``inv``
and ``fab`` run from the repository (``tasks.py``/``fabfile.py``), never here.

:func:`follow_invoke` makes a ``fab`` run read the same configuration as ``inv``.
"""

import copy
import os
import sys

from invoke import Argument, Collection, Config, Program
from invoke.config import Environment, merge_dicts

import hatasks
from hatasks import cli

NAME = "hatasks"


class HaConfig(Config):
    """Invoke's configuration with hatasks' own file name and environment prefix."""

    prefix = NAME

    def load_shell_env(self):
        """``HATASKS_<KEY>`` for each ``hatasks.<key>`` setting, plus invoke's own settings
        as ``HATASKS_<SECTION>_<KEY>`` (the environment level of invoke's hierarchy)."""
        self.merge()  # the environment is read for the keys the configuration has
        found = Environment(config=self._config, prefix=self._env_prefix).load()
        own = self._config.get(NAME)
        if isinstance(own, dict) and own:
            mine = Environment(config=own, prefix=self._env_prefix).load()
            if mine:
                found = merge_dicts(found, {NAME: mine})
        self._set(_env=found)
        self.merge()


class HaProgram(Program):
    """``hatasks``: the bundled collection, built on first need; ``--inventory``."""

    def core_args(self):
        # invoke writes no .pyc unless --write-pyc (to keep tasks.pyc out of a project); our
        # task modules are a package, cached as the interpreter would (PYTHONDONTWRITEBYTECODE)
        return [a if a.name != "write-pyc" else
                Argument(names=a.names, kind=bool, default=not sys.flags.dont_write_bytecode,
                         help="Enable creation of .pyc files (default: on unless"
                              " PYTHONDONTWRITEBYTECODE is set).")
                for a in super().core_args()] + [
            Argument(names=("inventory",),
                     help="The inventory (Ansible INI) to use; default hatasks.inventory"
                          " from the configuration, else ./hosts.ini."),
        ]

    def parse_collection(self):
        if not getattr(self, "_built", False):
            from hatasks.namespace import build, parts_needed

            # only the modules of the tasks named on the command line are imported; a task
            # list, help, completion or an unknown name gets the whole collection
            self.namespace = build(only=parts_needed(self))
            self._built = True
        # ./hatasks.yaml, as inv reads the invoke.yaml next to tasks.py
        self.config.set_project_location(os.getcwd())
        self.config.load_project()
        super().parse_collection()

    def update_config(self, merge=True):
        super().update_config(merge=False)
        path = self.args.inventory.value
        if path:
            overrides = merge_dicts(copy.deepcopy(self.config._overrides),
                                    {NAME: {"inventory": os.path.abspath(path)}})
            self.config.load_overrides(overrides, merge=False)
        if merge:
            self.config.merge()


def make_program():
    """A new ``hatasks`` program (tests build their own)."""
    cli.install()  # bad command lines exit 2 with one line (hatasks/cli.py)
    return HaProgram(name=NAME, binary=NAME, binary_names=[NAME], version=hatasks.__version__,
                     namespace=Collection(), config_class=HaConfig)


def main():
    """The ``hatasks`` console script."""
    make_program().run()


def follow_invoke(config):
    """Make ``fab``'s configuration ``config`` (built before the fabfile is imported) read
    what ``inv`` reads: ``invoke.yaml`` files and ``INVOKE_*`` variables (``fab`` alone
    reads ``fabric.yaml`` and ``FABRIC_*``). The project file and the environment are
    loaded after the fabfile, so only the system and user files are read again here."""
    if not isinstance(config, Config) or config.prefix == "invoke":
        return
    config._set(file_prefix="invoke", _env_prefix="INVOKE_")
    config._set(_system_found=None, _user_found=None)
    config.load_system(merge=False)
    config.load_user(merge=False)
    config.merge()

