"""hatasks: the runbook of a Pacemaker + pgpool-II + PostgreSQL HA system as Invoke tasks."""

__version__ = "0.1.0"
