"""The crm_mon parser under its old module name (now ``hatasks.crmmon``)."""

from hatasks.crmmon import *  # noqa: F401,F403  compat: removed in the merge sweep
