"""Tally's orchestrator: plans each photo's SAHI slices and dispatches them in chunks."""
