"""Tally's command line (`tally`) and Python SDK (`tally_client.sdk`) for users. The operator's
`tally admin` commands are the tally-admin package's."""
