"""Helpers the tests of the webhook feed share."""

from __future__ import annotations

import time

from models import webhooks


def wait_for_delivery(webhook_id: int) -> webhooks.Delivery:
    """The next delivery. The feed waits for every older transaction of the server to
    end, and other databases on a shared server may hold one open for a while."""
    deadline = time.monotonic() + 120
    while (delivery := webhooks.claim_delivery(webhook_id)) is None:
        assert time.monotonic() < deadline, "no delivery within 120 s"
        time.sleep(0.2)
    return delivery
