"""Tally's operator commands (`tally admin …`): tenants, API keys, dead letters."""
