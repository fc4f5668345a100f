"""/jobs/{id}: the state and progress of a bulk job."""

from __future__ import annotations

from litestar import get
from litestar.params import FromPath

from models import jobs
from models.errors import NotFound
from web.routes import params
from web.schemas import Job


@get("/jobs/{job_id:str}", sync_to_thread=True, tags=["jobs"], summary="A bulk job's state")
def read_job(job_id: FromPath[str]) -> Job:
    jid = params.bounded_int("job id", job_id, 1, params.MAX_USER_ID)
    job = jobs.get_job(jid)
    if job is None:
        raise NotFound(f"job {jid} not found", id=jid)
    return Job(**job)
