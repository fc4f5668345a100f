"""POSTing one webhook batch: signed, to an address checked after DNS resolution."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import uuid

import httpx

from models.webhooks import Delivery

TIMEOUT = 5.0  # seconds for the whole POST


class DeliveryError(Exception):
    """The receiver did not acknowledge the batch; the message is for last_error."""


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_global and not ip.is_multicast


def _resolve(host: str, port: int, deny_private: bool) -> str:
    """One address of ``host``; with ``deny_private``, refuse if any of its addresses is
    loopback, private, link-local or otherwise not global."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DeliveryError(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = [info[4][0] for info in infos]
    if deny_private:
        refused = [a for a in addresses if not _public(a)]
        if refused:
            raise DeliveryError(f"{host} resolves to a non-public address ({refused[0]})")
    return addresses[0]


def post_batch(delivery: Delivery, deny_private: bool) -> None:
    """POST the batch; raise DeliveryError unless the receiver answers 2xx in time.

    The connection goes to the address that was checked (the URL's host stays in the
    Host header and, for https, in SNI and certificate checks), so a DNS answer that
    changes between the check and the connection cannot redirect it."""
    body = json.dumps(
        {"webhook_id": delivery.webhook_id, "events": delivery.events}, separators=(",", ":")
    ).encode()
    url = httpx.URL(delivery.url)
    address = _resolve(url.host, url.port or (443 if url.scheme == "https" else 80), deny_private)
    headers = {
        "Content-Type": "application/json",
        "Host": url.netloc.decode(),
        "User-Agent": "segments-webhooks/1",
        "X-Segments-Signature": sign(delivery.secret, body),
        "X-Segments-Delivery": str(uuid.uuid4()),
    }
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            request = client.build_request(
                "POST",
                url.copy_with(host=address),
                content=body,
                headers=headers,
                extensions={"sni_hostname": url.host} if url.scheme == "https" else {},
            )
            response = client.send(request)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__} posting to {url.host}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"the receiver answered {response.status_code}")
