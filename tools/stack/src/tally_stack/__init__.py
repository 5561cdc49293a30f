"""Tally as local processes, for development: the whole stack (tally-stack), a local Triton
(tally-triton), moto's S3 server, and the launcher every one of them is started with."""

from tally_stack.launcher import free_port

__all__ = ["free_port"]
