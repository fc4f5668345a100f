"""The invariant checker: does the history explain the current state exactly?

``python -m models.verify`` prints a report and exits 1 on any violation.

- Per (user, segment), events ordered by time alternate add, remove, add... from an add.
- The pairs whose last event is an add are exactly the membership rows (expired but not
  yet swept rows included: their remove is written when they are swept).
- Every event and membership references an existing user and segment.
- When no job is unfinished, every auto membership of a live segment is in its bucket
  range (a layer's segment: in a bucket it owns): nobody holds an auto segment they
  should not.
- Layers: at most one membership per user per layer; bucket ownership consistent with
  the segments' percents; no missing auto member of a layer's segment (checks below).
- An import's staged ids are gone once its job ended. (`import` memberships follow the
  same add/remove rules as the others, so the checks above cover them.)

With ``HISTORY_RETENTION_MONTHS`` the history starts at the first month kept
(models/partitions.py): older events are treated as gone, dropped yet or not. Then a
pair's first kept event may be a remove (its add was dropped), and a membership added
before that month may have no event left.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime

from models.buckets import threshold_sql
from models.infra.db import fetchall, fetchone, init_db, unit_of_work
from models.infra.settings import ConfigError, load_settings
from models.months import month_start
from models.partitions import kept_from

SAMPLE = 10
# The events the checks read: those retention keeps (every one when it keeps all).
KEPT = "at >= coalesce(%(kept_from)s::timestamptz, '-infinity')"

NO_JOBS = "NOT EXISTS (SELECT 1 FROM jobs WHERE state IN ('queued', 'running'))"

CHECKS: dict[str, str] = {
    "events_out_of_order": f"""
        SELECT user_id, segment_id, operation, at, id FROM (
            SELECT *, lag(operation) OVER w AS previous
            FROM history WHERE {KEPT}
            WINDOW w AS (PARTITION BY user_id, segment_id ORDER BY at, id)
        ) e
        -- With retention the first kept event may be either: its add may be gone.
        WHERE operation = coalesce(previous, CASE WHEN %(kept_from)s IS NULL THEN 'remove' END)""",
    "membership_without_add_event": f"""
        SELECT m.user_id, m.segment_id FROM memberships m
        LEFT JOIN LATERAL (
            SELECT operation FROM history h
            WHERE h.user_id = m.user_id AND h.segment_id = m.segment_id AND {KEPT}
            ORDER BY at DESC, id DESC LIMIT 1
        ) last ON true
        WHERE last.operation IS DISTINCT FROM 'add'
          AND NOT (last.operation IS NULL
                   AND m.added_at < coalesce(%(kept_from)s::timestamptz, '-infinity'))""",
    "add_event_without_membership": f"""
        SELECT user_id, segment_id FROM (
            SELECT DISTINCT ON (user_id, segment_id) user_id, segment_id, operation
            FROM history WHERE {KEPT} ORDER BY user_id, segment_id, at DESC, id DESC
        ) last
        WHERE operation = 'add' AND NOT EXISTS (
            SELECT 1 FROM memberships m
            WHERE m.user_id = last.user_id AND m.segment_id = last.segment_id)""",
    "dangling_event": """
        SELECT h.id FROM history h
        WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = h.user_id)
           OR NOT EXISTS (SELECT 1 FROM segments s WHERE s.id = h.segment_id)""",
    "staged_ids_of_an_ended_job": """
        SELECT DISTINCT s.upload_id
        FROM (SELECT upload_id FROM import_staging
              UNION ALL SELECT upload_id FROM import_upload_batches) s
        WHERE NOT EXISTS (SELECT 1 FROM jobs j
                          WHERE j.kind = 'import' AND j.state IN ('queued', 'running')
                            AND (j.params->>'upload')::bigint = s.upload_id)""",
    "auto_member_outside_bucket": f"""
        SELECT m.user_id, m.segment_id FROM memberships m
        JOIN segments s ON s.id = m.segment_id
        LEFT JOIN layers l ON l.id = s.layer_id
        WHERE m.source = 'auto' AND s.deleted_at IS NULL AND {NO_JOBS}
          AND CASE WHEN s.layer_id IS NULL
                   THEN segment_bucket(s.salt, m.user_id) >= {threshold_sql("s.auto_percent")}
                   -- the bucket's owner by the primary key (not a scan of s's buckets)
                   ELSE (SELECT lb.segment_id FROM layer_buckets lb
                         WHERE lb.layer_id = s.layer_id
                           AND lb.bucket = segment_bucket(l.salt, m.user_id))
                        IS DISTINCT FROM s.id END""",
    # Layers: one membership per user per layer, of the layer's own segments; each
    # layer has its 10,000 buckets, owned by live segments of it, as many as their
    # percent; and (no job running) every user of an owned bucket who never held a
    # segment of the layer is its auto member (one who did may have been passed over
    # while holding a sibling, or have left by TTL or by hand: nothing re-adds them).
    "two_memberships_in_a_layer": """
        SELECT user_id, layer_id, count(*) FROM memberships WHERE layer_id IS NOT NULL
        GROUP BY user_id, layer_id HAVING count(*) > 1""",
    "membership_layer_not_its_segments": """
        SELECT m.user_id, m.segment_id FROM memberships m JOIN segments s ON s.id = m.segment_id
        WHERE m.layer_id IS DISTINCT FROM s.layer_id""",
    "layer_without_10000_buckets": """
        SELECT l.id, count(lb.bucket) FROM layers l
        LEFT JOIN layer_buckets lb ON lb.layer_id = l.id
        GROUP BY l.id HAVING count(lb.bucket) <> 10000""",
    "bucket_of_a_foreign_or_deleted_segment": """
        SELECT lb.layer_id, lb.bucket, lb.segment_id FROM layer_buckets lb
        JOIN segments s ON s.id = lb.segment_id
        WHERE s.deleted_at IS NOT NULL OR s.layer_id IS DISTINCT FROM lb.layer_id""",
    "segment_buckets_not_its_percent": f"""
        SELECT s.id, {threshold_sql("s.auto_percent")}, count(lb.bucket) FROM segments s
        LEFT JOIN layer_buckets lb ON lb.segment_id = s.id
        WHERE s.layer_id IS NOT NULL AND s.deleted_at IS NULL
        GROUP BY s.id HAVING count(lb.bucket) <> {threshold_sql("s.auto_percent")}""",
    "layer_auto_member_missing": f"""
        SELECT u.id, lb.segment_id FROM users u
        CROSS JOIN layers l
        JOIN layer_buckets lb ON lb.layer_id = l.id AND lb.bucket = segment_bucket(l.salt, u.id)
        WHERE lb.segment_id IS NOT NULL AND {NO_JOBS}
          AND NOT EXISTS (SELECT 1 FROM memberships m
                          WHERE m.user_id = u.id AND m.layer_id = l.id)
          AND NOT EXISTS (SELECT 1 FROM history h JOIN segments s ON s.id = h.segment_id
                          WHERE h.user_id = u.id AND s.layer_id = l.id)""",
}


@unit_of_work
def verify(retention_months: int | None = None, today: date | None = None) -> dict:
    """Run every check; returns counts and a sample of the violations of each."""
    first = kept_from(today or datetime.now(UTC).date(), retention_months)
    params = {"kept_from": month_start(first) if first else None}
    report: dict = {"violations": {}, "history_kept_from": first}
    for name, sql in CHECKS.items():
        rows = fetchall(f"SELECT * FROM ({sql}) v LIMIT {SAMPLE}", params)
        if rows:
            count = fetchone(f"SELECT count(*) FROM ({sql}) v", params)[0]
            report["violations"][name] = {"count": count, "sample": [list(r) for r in rows]}
    report["memberships"], report["events"], report["unfinished_jobs"] = fetchone(
        """SELECT (SELECT count(*) FROM memberships), (SELECT count(*) FROM history),
                  (SELECT count(*) FROM jobs WHERE state IN ('queued', 'running'))"""
    )
    report["ok"] = not report["violations"]
    return report


def main() -> None:
    try:
        settings = load_settings()
        init_db(settings)
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    report = verify(settings.history_retention_months)
    print(json.dumps(report, indent=2, default=str))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
