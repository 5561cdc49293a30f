"""Tally's local stack: every service and server as local processes (tally-stack)."""

from tally_stack._config import free_port

__all__ = ["free_port"]
