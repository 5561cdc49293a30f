"""The SDK's final statuses are the contract's (it keeps a copy so as not to pull protobuf)."""

from __future__ import annotations

from tally_client.sdk import FINAL
from tally_contracts import statuses


def test_the_sdks_final_statuses_are_the_contracts() -> None:
    assert {str(s) for s in statuses.FINAL} == FINAL
