"""``python -m workers.scheduler``: the periodic trigger (the Procfile's scheduler).

It sends messages; the workers do the work. It also runs the segments' scheduled
steps itself (each one short transaction that records a job, models/schedules.py).
Running several schedulers is safe: a sweep is safe to run twice at once, a re-enqueue
pass only re-sends stale jobs, history maintenance takes a lock and re-reads what
exists, and a schedule step is claimed by one runner (SKIP LOCKED) and done once.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler

from models import schedules
from workers.actors import (
    dispatch_webhooks,
    maintain_history,
    requeue_stale_jobs,
    send,
    sweep_expired,
)
from workers.boot import bootstrap, settings_or_exit

log = logging.getLogger("workers.scheduler")

# History's partitions are made months ahead, so a minute is plenty; a tick with nothing
# to do is a catalog read.
HISTORY_INTERVAL = 60


def tick(actor) -> None:
    try:
        send(actor.__name__)
    except Exception as exc:  # noqa: BLE001 - broker down: try again at the next tick
        log.warning("could not send %s: %s", actor.__name__, exc)


def run_schedules() -> None:
    """Run every due schedule step, one transaction each; the unit of work sends each
    step's job after its commit (a lost send is re-sent by the re-enqueue pass)."""
    while True:
        try:
            ran = schedules.run_due_step()
        except Exception as exc:  # noqa: BLE001 - database away: the next tick tries again
            log.warning("schedule steps: %s", type(exc).__name__)
            return
        if ran is None:
            return
        log.info("schedule step %s %s (job %s)", ran.step_id, ran.state, ran.job_id)


def main() -> None:
    settings = bootstrap(settings_or_exit()).settings
    scheduler = BlockingScheduler(timezone="UTC")
    # coalesce + max_instances=1: after a pause, one catch-up run rather than a burst.
    common = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}
    scheduler.add_job(
        tick, "interval", args=[sweep_expired], seconds=settings.sweep_interval, **common
    )
    scheduler.add_job(
        tick, "interval", args=[requeue_stale_jobs], seconds=settings.requeue_interval, **common
    )
    scheduler.add_job(
        tick, "interval", args=[dispatch_webhooks], seconds=settings.webhook_interval, **common
    )
    scheduler.add_job(run_schedules, "interval", seconds=settings.schedule_interval, **common)
    scheduler.add_job(
        tick,
        "interval",
        args=[maintain_history],
        seconds=HISTORY_INTERVAL,
        next_run_time=datetime.now(UTC),
        **common,
    )
    log.info(
        "scheduler started: sweep every %ss, re-enqueue every %ss, webhooks every %ss",
        settings.sweep_interval,
        settings.requeue_interval,
        settings.webhook_interval,
    )
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        scheduler.start()


if __name__ == "__main__":
    main()
