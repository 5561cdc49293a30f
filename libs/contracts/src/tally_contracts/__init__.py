"""Tally's bus contract: the protobuf messages of proto/tally/v1, generated (`make proto`)."""
