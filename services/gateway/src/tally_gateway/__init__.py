"""Tally's gateway: the read side of the HTTP API."""
