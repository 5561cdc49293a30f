"""Tally's command line and SDK. Today: the operator's `tally admin` commands."""
