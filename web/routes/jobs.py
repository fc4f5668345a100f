"""/jobs/{id}: the state and progress of a bulk job."""

from __future__ import annotations

from models import jobs
from models.errors import NotFound
from web.auth import READ, SCOPE
from web.methods import get_and_head
from web.routes import params
from web.schemas import ERRORS, Job


@get_and_head(
    "/jobs/{job_id:str}",
    sync_to_thread=True,
    responses=ERRORS,
    tags=["jobs"],
    summary="A bulk job's state",
    opt={SCOPE: READ},
)
def read_job(job_id: params.JobIdPath) -> Job:
    jid = params.job_id(job_id)
    job = jobs.get_job(jid)
    if job is None:
        raise NotFound(f"job {jid} not found", id=jid)
    # The response's fields are the row's columns of the same names.
    return Job(**{field: getattr(job, field) for field in Job.__struct_fields__})
