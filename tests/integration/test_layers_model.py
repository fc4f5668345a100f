"""Random sequences over one layer, compared with a small in-memory model.

Hypothesis drives segment creation in the layer, raises and lowerings, deletion, manual
adds (with and without ``move``, with and without a TTL), removals, time passing,
imports (with and without ``move``) and new users against the real domain layer and
database; jobs run to completion after each step. The model allocates buckets by the
spec's words on its own. After every step: each user's segments equal the model's (so
at most one per layer), the bucket owners equal the model's, and the invariant checker
passes.
"""

from __future__ import annotations

import os
from decimal import Decimal

import psycopg2
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from models import imports, jobs, layers, memberships, reads, segments, users
from models.buckets import BUCKETS, bucket, threshold
from models.errors import Conflict, NotFound
from models.verify import verify
from tests.conftest import TABLES
from tests.integration.jobs import run_unfinished_jobs, start_import

USERS = st.integers(1, 12)
NAMES = st.sampled_from(["S1", "S2", "S3", "S4"])
PERCENTS = st.sampled_from([0, 10, 25, 33.33, 50, 100])
SALTS = st.text("0123456789abcdef", min_size=16, max_size=16)


class Allocation:
    """The spec's allocation, written out plainly: never-used buckets ascending, then
    released ones, longest released first; lowering gives back the latest taken."""

    def __init__(self) -> None:
        self.never_used = list(range(BUCKETS))
        self.released: list[tuple[int, int]] = []  # (release number, bucket)
        self.taken: dict[str, list[int]] = {}  # segment -> buckets in the order taken
        self.releases = 0

    def free(self) -> int:
        return len(self.never_used) + len(self.released)

    def take(self, name: str, count: int) -> list[int]:
        self.released.sort()
        chosen = (self.never_used + [b for _, b in self.released])[:count]
        from_never_used = min(count, len(self.never_used))
        self.never_used = self.never_used[from_never_used:]
        self.released = self.released[count - from_never_used :]
        self.taken.setdefault(name, []).extend(chosen)
        return chosen

    def give_back(self, name: str, count: int | None = None) -> None:
        held = self.taken.get(name, [])
        count = len(held) if count is None else count
        self.releases += 1
        given, self.taken[name] = held[len(held) - count :], held[: len(held) - count]
        self.released += [(self.releases, b) for b in given]

    def owners(self) -> dict[int, str]:
        return {b: name for name, buckets in self.taken.items() for b in buckets}


class Layered(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sql = psycopg2.connect(os.environ["DATABASE_DSN"])
        self.sql.autocommit = True
        self.users: set[int] = set()
        self.percents: dict[str, float] = {}
        self.alloc = Allocation()
        self.held: dict[int, tuple[str, str, bool]] = {}  # user -> (segment, source, ttl)
        self.opted_out: set[tuple[int, str]] = set()
        self.salt = ""

    @initialize(salt=SALTS)
    def empty(self, salt: str) -> None:
        with self.sql.cursor() as cur:
            cur.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        layers.create_layer("L")
        with self.sql.cursor() as cur:  # the drawn salt: a failure replays and shrinks
            cur.execute("UPDATE layers SET salt = %s", (salt,))
        self.salt = salt

    def join(self, buckets: list[int], name: str) -> None:
        """Auto assignment of ``buckets``: users there holding nothing, not opted out."""
        mine = set(buckets)
        for user in self.users:
            free = user not in self.held and (user, name) not in self.opted_out
            if free and bucket(self.salt, user) in mine:
                self.held[user] = (name, "auto", False)

    @rule(user=USERS)
    def create_user(self, user: int) -> None:
        if user in self.users:
            with pytest.raises(Conflict):
                users.create_user(user)
            return
        joined = users.create_user(user)
        self.users.add(user)
        owner = self.alloc.owners().get(bucket(self.salt, user))
        assert joined == ([owner] if owner else [])
        if owner:
            self.held[user] = (owner, "auto", False)

    @rule(name=NAMES, percent=PERCENTS)
    def create_segment(self, name: str, percent: float) -> None:
        need = threshold(percent)
        if name in self.percents or need > self.alloc.free():
            with pytest.raises(Conflict):
                segments.create_segment(name, Decimal(str(percent)), "L")
            return
        segments.create_segment(name, Decimal(str(percent)), "L")
        run_unfinished_jobs(batch=3)
        self.percents[name] = percent
        self.join(self.alloc.take(name, need), name)

    @rule(name=NAMES, percent=PERCENTS)
    def change_percent(self, name: str, percent: float) -> None:
        if name not in self.percents:
            with pytest.raises(NotFound):
                segments.change_percent(name, Decimal(str(percent)))
            return
        old, new = threshold(self.percents[name]), threshold(percent)
        if new - old > self.alloc.free():
            with pytest.raises(Conflict):
                segments.change_percent(name, Decimal(str(percent)))
            return
        segments.change_percent(name, Decimal(str(percent)))
        run_unfinished_jobs(batch=3)
        self.percents[name] = percent
        if new > old:
            self.join(self.alloc.take(name, new - old), name)
        elif new < old:
            self.alloc.give_back(name, old - new)
            mine = set(self.alloc.taken[name])
            for user, (seg, source, _) in list(self.held.items()):
                if seg == name and source == "auto" and bucket(self.salt, user) not in mine:
                    del self.held[user]

    @rule(name=NAMES)
    def delete_segment(self, name: str) -> None:
        if name not in self.percents:
            with pytest.raises(NotFound):
                segments.delete_segment(name)
            return
        segments.delete_segment(name)
        run_unfinished_jobs(batch=3)
        del self.percents[name]
        self.alloc.give_back(name)
        self.held = {u: h for u, h in self.held.items() if h[0] != name}
        self.opted_out = {k for k in self.opted_out if k[1] != name}

    @rule(user=USERS, name=NAMES, move=st.booleans(), ttl=st.booleans())
    def add(self, user: int, name: str, move: bool, ttl: bool) -> None:
        def change():
            memberships.change_memberships(
                user, add=[name], active_time=3600 if ttl else None, move=move
            )

        if user not in self.users or name not in self.percents:
            with pytest.raises(NotFound):
                change()
            return
        other = self.held.get(user, (name,))[0]
        if other != name and not move:
            with pytest.raises(Conflict):
                change()
            return
        change()
        if other != name:
            self.opted_out.add((user, other))
        self.held[user] = (name, "manual", ttl)
        self.opted_out.discard((user, name))

    @rule(user=USERS, name=NAMES)
    def remove(self, user: int, name: str) -> None:
        if user not in self.users or name not in self.percents:
            return
        memberships.change_memberships(user, remove=[name])
        if self.held.get(user, ("",))[0] == name:
            del self.held[user]
        self.opted_out.add((user, name))

    @rule()
    def time_passes(self) -> None:
        with self.sql.cursor() as cur:
            cur.execute("UPDATE memberships SET expires_at = now() WHERE expires_at IS NOT NULL")
        self.held = {u: h for u, h in self.held.items() if not h[2]}

    @rule(name=NAMES, ids=st.lists(USERS, min_size=1, max_size=6), move=st.booleans())
    def import_ids(self, name: str, ids: list[int], move: bool) -> None:
        if name not in self.percents:
            return
        job_id = start_import(name, ids, imports.ImportOptions(move=move))
        run_unfinished_jobs(batch=2)
        conflicts = 0
        for user in sorted(set(ids) & self.users):
            seg, source, _ = self.held.get(user, (name, "import", False))
            if seg != name and not move:
                conflicts += 1
                continue
            if seg != name:
                self.opted_out.add((user, seg))
            self.held[user] = (name, "import" if seg != name or source == "auto" else source, False)
            self.opted_out.discard((user, name))
        assert jobs.get_job(job_id).result["conflicts"] == conflicts

    @invariant()
    def reads_match_the_model(self) -> None:
        for user in self.users:
            expected = [self.held[user][0]] if user in self.held else []
            assert reads.user_segments(user) == expected, user

    @invariant()
    def buckets_match_the_model(self) -> None:
        with self.sql.cursor() as cur:
            cur.execute(
                """SELECT lb.bucket, s.name FROM layer_buckets lb
                   JOIN segments s ON s.id = lb.segment_id"""
            )
            assert dict(cur.fetchall()) == self.alloc.owners()

    @invariant()
    def history_explains_the_state(self) -> None:
        report = verify()
        assert report["ok"], report["violations"]

    def teardown(self) -> None:
        self.sql.close()


TestLayered = Layered.TestCase
TestLayered.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
