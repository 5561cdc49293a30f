"""Tally stack."""
