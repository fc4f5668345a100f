"""/jobs/{id}: the state and progress of a bulk job."""

from __future__ import annotations

from models import jobs
from models.errors import NotFound
from web.methods import get_and_head
from web.routes import params
from web.schemas import ERRORS, Job


@get_and_head(
    "/jobs/{job_id:str}",
    sync_to_thread=True,
    responses=ERRORS,
    tags=["jobs"],
    summary="A bulk job's state",
)
def read_job(job_id: params.JobIdPath) -> Job:
    jid = params.job_id(job_id)
    job = jobs.get_job(jid)
    if job is None:
        raise NotFound(f"job {jid} not found", id=jid)
    return Job(
        id=job.id,
        kind=job.kind,
        segment_id=job.segment_id,
        state=job.state,
        done=job.done,
        total=job.total,
        error=job.error,
        attempts=job.attempts,
        params=job.params,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
