"""Assignment jobs of one layer as it fills: four 20 % segments of a layer over 50,000
users, each job run in-process through the real actor, one after the other, on a fresh
database (``python -m bench.layer_fill``). Each job adds about 10,000 users, so a time
that grows with the segments before it is a cost of the layer's fill, not of the job.
"""

from __future__ import annotations

import os
import sys
import time
from decimal import Decimal

DSN = "host=127.0.0.1 user=postgres dbname=segments_bench_layer_fill"
USERS = 50_000


def main() -> None:
    os.environ["DATABASE_DSN"] = sys.argv[1] if len(sys.argv) > 1 else DSN
    os.environ.setdefault("BATCH_SIZE", "1000")
    from dramatiq.brokers.stub import StubBroker

    from models import jobs, layers, segments
    from models.infra.db import db
    from models.infra.settings import load_settings
    from scripts.procs import migrated_database
    from workers import actors
    from workers.boot import bootstrap

    migrated_database(os.environ["DATABASE_DSN"], fresh=True)
    bootstrap(load_settings(), StubBroker())
    with db.connection_context():
        db.execute_sql("INSERT INTO users (id) SELECT generate_series(1, %s)", (USERS,))
        db.execute_sql("ANALYZE")
    layers.create_layer("L")
    for i in range(4):
        view = segments.create_segment(f"S{i}", Decimal(20), "L")
        started = time.monotonic()
        actors.run_job(view.job_id)
        state = jobs.get_job(view.job_id).state
        print(f"segment {i + 1} of the layer: {time.monotonic() - started:.2f} s ({state})")


if __name__ == "__main__":
    main()
