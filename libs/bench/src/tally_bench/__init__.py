"""Tally's status-path benchmark (`tally-bench-status`): the gateway and the projector run as
subprocesses, fed through PostgreSQL and the bus, measured over loopback HTTP."""
