"""An import's upload: its ids staged as they arrive, its job recorded at the end.

While the client sends, the upload's transaction (on a connection of its own) writes only
``import_upload_batches`` rows under an upload id of its own: each an array of up to
50,000 distinct ids, so the client waits for no per-id index work (the job moves them
into ``import_staging``, models/imports.py). It holds no lock on the segment, the jobs or
anything another request waits for. ``commit`` counts the distinct ids, then records the
job and the Idempotency-Key in one short statement each;
a rejected or abandoned upload rolls back and leaves nothing. A slot among
``IMPORT_MAX_UPLOADS_TOTAL`` (a transaction-level advisory lock) bounds the connections
all web processes hold for uploads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from models import audit, outbox
from models.errors import NotFound
from models.events import promise_no_history
from models.imports import EXPAND, ImportOptions
from models.infra import watchdog
from models.infra.db import current_actor
from models.infra.settings import active
from models.tables import JobKind

UPLOAD_SLOTS_LOCK = 730_198_555  # the advisory lock class (int4) of the upload slots


@dataclass(frozen=True)
class ImportStarted:
    job_id: int
    ids: int  # distinct ids staged
    replayed: bool  # an Idempotency-Key repeat: the original job, nothing new started


class IdempotencyMismatch(Exception):
    """The Idempotency-Key was used before for another request (segment, options, body)."""


class UploadsBusy(Exception):
    """Every upload slot of the service is taken."""


def _not_found(segment: str) -> NotFound:
    return NotFound(f"segment {segment} not found", segment=segment)


class Upload:
    """One upload's transaction: ``start`` (404 for an unknown segment, UploadsBusy when
    no slot is free), ``add`` ids as they are parsed, then ``commit``; ``close`` rolls
    back whatever was not committed. Blocking calls: run them off the event loop."""

    def __init__(self, segment: str, options: ImportOptions, key: str | None) -> None:
        self.segment, self.options, self.key = segment, options, key
        self.digest = hashlib.sha256()
        self.conn = watchdog.connect(active().connect_params())
        self.cur = self.conn.cursor()
        self.upload_id = 0
        self.batches: list[int] = []  # ids in each staged batch

    def start(self, slots: int) -> None:
        promise_no_history(self.cur)  # a long transaction: the webhook feed need not wait
        self.cur.execute(
            "SELECT i FROM generate_series(0, %s - 1) i "
            "WHERE pg_try_advisory_xact_lock(%s, i) LIMIT 1",
            (slots, UPLOAD_SLOTS_LOCK),
        )
        if self.cur.fetchone() is None:
            raise UploadsBusy()
        self.cur.execute(
            "SELECT nextval('import_upload_ids') FROM segments "
            "WHERE name = %s AND deleted_at IS NULL",
            (self.segment,),
        )
        row = self.cur.fetchone()
        if row is None:
            raise _not_found(self.segment)
        self.upload_id = row[0]

    def feed(self, raw: bytes) -> None:
        """The body's bytes as received, for the Idempotency-Key's comparison."""
        self.digest.update(raw)

    def add(self, ids: set[bytes]) -> None:
        """Stage a batch of distinct ids, each as its decimal digits (no leading zero)."""
        self.cur.execute(
            "INSERT INTO import_upload_batches (upload_id, batch, ids) "
            "VALUES (%s, %s, %s::bigint[])",
            (self.upload_id, len(self.batches), "{" + b",".join(ids).decode() + "}"),
        )
        self.batches.append(len(ids))

    def _distinct(self) -> int:
        if len(self.batches) <= 1:
            return sum(self.batches)
        self.cur.execute(
            "SELECT count(DISTINCT u) FROM import_upload_batches b, unnest(b.ids) u "
            "WHERE b.upload_id = %s",
            (self.upload_id,),
        )
        return self.cur.fetchone()[0]

    def _fingerprint(self) -> str:
        """The whole request as the key covers it: segment, options and body."""
        request = json.dumps([self.segment, asdict(self.options), self.digest.hexdigest()])
        return hashlib.sha256(request.encode()).hexdigest()

    def commit(self) -> ImportStarted:
        """Record the job (404 if the segment went meanwhile) and commit; or, for a key
        seen before, roll back and name the original job (IdempotencyMismatch if that
        request differed)."""
        if self.key is not None and (seen := self._seen()) is not None:
            return seen
        params = {**asdict(self.options), "upload": self.upload_id}
        staged = self._distinct()
        self.cur.execute(
            "INSERT INTO jobs (kind, segment_id, params, total, phase, actor) "
            "SELECT %s, id, %s, %s, %s, %s FROM segments WHERE name = %s AND deleted_at IS NULL "
            "RETURNING id",
            (
                JobKind.IMPORT.value,
                json.dumps(params),
                staged,
                EXPAND,
                current_actor(),
                self.segment,
            ),
        )
        row = self.cur.fetchone()
        if row is None:
            raise _not_found(self.segment)
        job_id = row[0]
        details = {"segment": self.segment, "job_id": job_id, "options": asdict(self.options)}
        self.cur.execute(
            audit.INSERT_SQL, audit.entry_params("import.start", self.segment, details)
        )
        if self.key is not None:
            self.cur.execute(
                "INSERT INTO import_keys (key, body_sha256, job_id, ids) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (key) DO NOTHING RETURNING job_id",
                (self.key, self._fingerprint(), job_id, staged),
            )
            if self.cur.fetchone() is None:  # the same key committed meanwhile
                self.conn.rollback()
                return self._seen()
        self.conn.commit()
        outbox.send_job(job_id)
        return ImportStarted(job_id, staged, replayed=False)

    def _seen(self) -> ImportStarted | None:
        """The job an earlier request with this key started, with the count it answered."""
        self.cur.execute(
            "SELECT body_sha256, job_id, ids FROM import_keys WHERE key = %s", (self.key,)
        )
        row = self.cur.fetchone()
        if row is None:
            return None
        fingerprint, job_id, ids = row
        if fingerprint != self._fingerprint():
            raise IdempotencyMismatch(self.key)
        return ImportStarted(job_id, ids or 0, replayed=True)

    def close(self) -> None:
        """Roll back whatever was not committed, and close the connection."""
        self.conn.close()
