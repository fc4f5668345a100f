"""Delivering a webhook's events: the process's delivery slots, claim / POST /
acknowledge of each batch (models/webhooks.py keeps the feed and its state), and the
POST itself, signed, to an address checked after DNS resolution."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpcore
import httpx

from models import webhooks
from models.infra.settings import active
from models.webhooks import Delivery

log = logging.getLogger("workers.delivery")

BATCHES_PER_MESSAGE = 5  # a busy webhook does not hog a worker thread
TIMEOUT = 5.0  # seconds for the whole POST: name lookup, connect, send, the answer's head


class DeliveryError(Exception):
    """The receiver did not acknowledge the batch; the message is for last_error."""


_slots_lock = threading.Lock()
_slots: threading.Semaphore | None = None


def _delivery_slots() -> threading.Semaphore:
    """At most WORKER_THREADS - 1 deliveries at once in this process (at least one): a
    thread always stays for jobs and the TTL sweep, however slowly receivers answer."""
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(max(1, active().worker_threads - 1))
        return _slots


def deliver(webhook_id: int) -> bool:
    """Deliver the webhook's pending events, a few batches, in one of this process's
    delivery slots; True when more are pending at once. With every slot taken nothing
    is leased, so the dispatcher sends the webhook again next tick."""
    slots = _delivery_slots()
    if not slots.acquire(blocking=False):
        return False
    try:
        return _deliver_batches(webhook_id)
    finally:
        slots.release()


def _deliver_batches(webhook_id: int) -> bool:
    """Claim, POST and acknowledge batch after batch; a failure backs this webhook off
    alone. True when more are pending at once."""
    for _ in range(BATCHES_PER_MESSAGE):
        delivery = webhooks.claim_delivery(webhook_id)
        if delivery is None:
            return False
        if delivery.events:
            try:
                post_batch(delivery, active().webhook_deny_private)
            except Exception as exc:  # noqa: BLE001 - any failure backs off, logged
                # The receiver's fault (DeliveryError) or ours: either way this webhook
                # alone backs off, and its state says why.
                error = str(exc) if isinstance(exc, DeliveryError) else type(exc).__name__
                delay = webhooks.failed(delivery, error)
                log.warning("webhook %s: %s; next attempt in %.0fs", webhook_id, error, delay)
                return False
        webhooks.acknowledge(delivery)
        if not delivery.more:
            return False
    return True


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_global and not ip.is_multicast


# Name lookups run here, so one that hangs (a silent name server: the system resolver's
# own timeouts are often 10-30 s) costs the delivery no more than its deadline; the
# lookup itself ends when the resolver gives up. A few at a time: more wait their turn,
# and the wait counts against their deadline too.
_lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")


def _resolve(host: str, port: int, deny_private: bool, deadline: _Deadline) -> str:
    """One address of ``host``, looked up within the deadline; with ``deny_private``,
    refuse if any of its addresses is loopback, private, link-local or otherwise not
    global."""
    lookup = _lookups.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = lookup.result(timeout=deadline.remaining())
    except TimeoutError:
        raise DeliveryError(f"cannot resolve {host} within {TIMEOUT:g} s") from None
    except socket.gaierror as exc:
        raise DeliveryError(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = [info[4][0] for info in infos]
    if deny_private:
        refused = [a for a in addresses if not _public(a)]
        if refused:
            raise DeliveryError(f"{host} resolves to a non-public address ({refused[0]})")
    return addresses[0]


class _Deadline(httpcore.NetworkBackend):
    """httpcore's own sync backend, with each connect, read and write bounded by what is
    left of one deadline. httpx's timeouts are per operation: a receiver that trickles
    its answer a byte at a time would keep a worker thread for as long as it liked."""

    def __init__(self, seconds: float) -> None:
        self._inner = httpcore.SyncBackend()
        self._until = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left, 0 once passed."""
        return max(self._until - time.monotonic(), 0.0)

    def left(self) -> float:
        """Seconds left for one socket operation; raises once the deadline has passed."""
        left = self.remaining()
        if left == 0:
            raise httpcore.ReadTimeout("deadline passed")
        return left

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        stream = self._inner.connect_tcp(host, port, self.left(), local_address, socket_options)
        return _DeadlineStream(stream, self)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.UnsupportedProtocol("webhooks are http(s) URLs")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout=None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left())

    def write(self, buffer: bytes, timeout=None) -> None:
        # httpcore's own write sets one timeout for all its sends: a receiver taking the
        # body a little at a time never trips it. Each send here gets what is left.
        sock = self._inner.get_extra_info("socket")
        if sock is None:
            self._inner.write(buffer, self._deadline.left())
            return
        view = memoryview(buffer)
        try:
            while view:
                sock.settimeout(self._deadline.left())
                view = view[sock.send(view) :]
        except TimeoutError:
            raise httpcore.WriteTimeout("deadline passed") from None
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from None

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        inner = self._inner.start_tls(ssl_context, server_hostname, self._deadline.left())
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


def post_batch(delivery: Delivery, deny_private: bool) -> None:
    """POST the batch; raise DeliveryError unless the receiver answers 2xx within
    TIMEOUT seconds in all.

    The connection goes to the address that was checked (the URL's host stays in the
    Host header and, for https, in SNI and certificate checks), so a DNS answer that
    changes between the check and the connection cannot redirect it. The answer's body
    is never read: its status is all that counts."""
    body = json.dumps(
        {"webhook_id": delivery.webhook_id, "events": delivery.events}, separators=(",", ":")
    ).encode()
    url = httpx.URL(delivery.url)
    deadline = _Deadline(TIMEOUT)
    port = url.port or (443 if url.scheme == "https" else 80)
    address = _resolve(url.host, port, deny_private, deadline)
    headers = {
        "Content-Type": "application/json",
        "Host": url.netloc.decode(),
        "User-Agent": "segments-webhooks/1",
        "X-Segments-Signature": sign(delivery.secret, body),
        "X-Segments-Delivery": str(uuid.uuid4()),
    }
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    try:
        with (
            httpcore.ConnectionPool(network_backend=deadline) as pool,
            pool.stream(
                "POST",
                str(url.copy_with(host=address)),
                headers=headers,
                content=body,
                extensions=extensions,
            ) as response,
        ):
            status = response.status
    except httpcore.TimeoutException:
        raise DeliveryError(f"no answer within {TIMEOUT:g} s from {url.host}") from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        raise DeliveryError(f"{type(exc).__name__} posting to {url.host}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"the receiver answered {status}")
