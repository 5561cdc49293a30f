"""The dashboard's webhook events (webhooks.js) are tally_contracts.webhooks', in its order."""

from __future__ import annotations

import json
import re

from tally_contracts.webhooks import EVENT_TYPES
from tally_gateway.routes.dashboard import FOLDER


def test_the_dashboard_offers_the_contracts_webhook_events_in_their_order() -> None:
    source = (FOLDER / "webhooks.js").read_text()
    match = re.search(r"export const WEBHOOK_EVENTS = [^\[]*(\[[^\]]*\])", source)
    assert match is not None, "webhooks.js has no WEBHOOK_EVENTS"
    assert json.loads(re.sub(r",\s*\]", "]", match[1])) == [str(e) for e in EVENT_TYPES]
