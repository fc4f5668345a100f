"""/webhooks: subscribe a URL to membership changes, read its delivery state, remove it."""

from __future__ import annotations

from dataclasses import asdict

from litestar import Controller, delete, post
from litestar.params import JSONBody

from models import webhooks
from models.webhooks import WebhookView
from web.auth import ADMIN, READ, SCOPE
from web.methods import get_and_head, options_handler
from web.routes import params
from web.schemas import ERRORS, MAX_USER_ID, Webhook, WebhookCreate, WebhookList


def _id(raw: str) -> int:
    return params.integer("webhook id", raw, 1, MAX_USER_ID)


def _webhook(view: WebhookView) -> Webhook:
    return Webhook(**asdict(view))


class WebhookController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]
    options = options_handler()
    item_options = options_handler("/{webhook_id:str}")  # GET and DELETE share it

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        responses=ERRORS,
        summary="Add a webhook",
        opt={SCOPE: ADMIN},
    )
    def create(self, data: JSONBody[WebhookCreate]) -> Webhook:
        """Every event written from now on, of the named segments (all when absent), is
        POSTed in signed batches. The secret is in this answer only."""
        return _webhook(webhooks.create_webhook(data.url, data.segments, data.secret))

    @get_and_head(
        "/", sync_to_thread=True, responses=ERRORS, summary="Every webhook", opt={SCOPE: READ}
    )
    def list(self) -> WebhookList:
        return WebhookList(webhooks=[_webhook(v) for v in webhooks.list_webhooks()])

    @get_and_head(
        "/{webhook_id:str}",
        sync_to_thread=True,
        responses=ERRORS,
        summary="A webhook's state",
        opt={SCOPE: READ},
    )
    def read(self, webhook_id: params.IdPath) -> Webhook:
        """Delivery state: cursor (last event id delivered), pending events (counted up
        to 10,000), last delivery, last error and consecutive failures."""
        return _webhook(
            webhooks.get_webhook(params.integer("webhook id", webhook_id, 1, 2**63 - 1))
        )

    @delete(
        "/{webhook_id:str}",
        status_code=200,
        sync_to_thread=True,
        responses=ERRORS,
        summary="Remove a webhook; its deliveries stop",
        opt={SCOPE: ADMIN},
    )
    def remove(self, webhook_id: params.IdPath) -> Webhook:
        return _webhook(webhooks.delete_webhook(_id(webhook_id)))
