"""Tally projector."""
