"""The studio's job store without Ray: a fake dispatcher stands in for the model replicas, so fair
order, limits, cancel, lost replicas and shutdown are checked in milliseconds."""
from __future__ import annotations

import asyncio

import pytest

from backend.service.jobs import Refused
from backend.service.worker import CANCELLED, Outcome
from backend.studio.metrics import StoreMetrics
from backend.studio.store import JobStore, ReplicaLost
from blender_att3d.wire.job_state import JobState


class FakeReplicas:
    """``n`` replicas: each dispatched job runs until the test releases it (``release(id, outcome)``),
    reporting progress to the store as a model replica does; ``die(id)`` is its replica dying."""

    def __init__(self, n: int = 1) -> None:
        self.n = n
        self.started: list[str] = []  # job ids, in the order the store sent them
        self.gates: dict[str, asyncio.Future] = {}
        self.store: JobStore | None = None

    async def replicas(self) -> int:
        return self.n

    async def dispatch(self, spec: dict) -> Outcome:
        self.started.append(spec["id"])
        fut = self.gates[spec["id"]] = asyncio.get_running_loop().create_future()
        if await self.store.progress(spec["id"], 0.0, "running", {"pid": 4242}):
            return CANCELLED
        return await fut

    def release(self, job_id: str, outcome: Outcome | None = None) -> None:
        self.gates[job_id].set_result(outcome or Outcome(JobState.DONE, "done", result={"id": job_id}))

    def die(self, job_id: str) -> None:
        self.gates[job_id].set_exception(ReplicaLost("its process died: ActorDiedError"))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def run(coro_fn, **store_kw):
    async def main():
        fake = FakeReplicas(store_kw.pop("replicas", 1))
        store = JobStore(fake.dispatch, fake.replicas, metrics=StoreMetrics(), **store_kw)
        fake.store = store
        await store.start()
        try:
            return await coro_fn(store, fake)
        finally:
            await store.shutdown()

    return asyncio.run(main())


def test_a_single_job_is_not_stuck_behind_another_users_batch():
    async def scenario(store, fake):
        a = [await store.submit("generate", {"n": i}, 1, "alice") for i in range(16)]
        await settle()
        b = await store.submit("generate", {"n": 0}, 1, "bob")
        st = await store.status(b.id, "bob")
        assert st.status == JobState.QUEUED and st.queue_position == 0  # a0 runs; bob is next
        assert (await store.status(a[5].id, "alice")).queue_position == 5
        info = await store.info("bob")
        assert info["replicas"] == 1 and info["queue"]["queued"] == 16
        assert info["queue"]["yours"] == [{"id": b.id, "kind": "generate", "status": "queued", "queue_position": 0}]
        fake.release(a[0].id)
        await settle()
        assert fake.started == [a[0].id, b.id]  # one job's wait, not sixteen
        fake.release(b.id)
        await settle()
        done = await store.status(b.id, "bob")
        assert done.status == JobState.DONE and (await store.result(b.id, "bob"))[1] == {"id": b.id}
        assert 'att3d_studio_jobs_finished_total{kind="generate",status="done",user="bob"} 1.0' in \
            store.metrics.render(store.queue_lengths(), store.in_flight, store.replicas)
    run(scenario)


def test_two_replicas_take_two_jobs_and_no_more():
    async def scenario(store, fake):
        jobs = [await store.submit("generate", {}, 1, "alice") for _ in range(5)]
        await settle()
        assert fake.started == [jobs[0].id, jobs[1].id] and store.in_flight == 2
        assert (await store.status(jobs[0].id, "alice")).status == JobState.RUNNING
    run(scenario, replicas=2)


def test_limits_per_user_and_in_all():
    async def scenario(store, fake):
        for _ in range(3):
            await store.submit("generate", {}, 1, "alice")
        await settle()  # one runs: 2 wait
        with pytest.raises(Refused) as e:
            await store.submit("generate", {}, 1, "alice")
        assert e.value.status == 429 and "limit per user is 3" in e.value.message
        await store.submit("generate", {}, 1, "bob")  # another user is not held back
        await store.submit("generate", {}, 1, "carol")
        with pytest.raises(Refused) as e:
            await store.submit("generate", {}, 1, "dave")
        assert e.value.status == 503 and e.value.headers == {"Retry-After": "1"}
    run(scenario, max_queue=4, max_queue_per_user=3)


def test_users_see_only_their_own_jobs():
    async def scenario(store, fake):
        job = await store.submit("generate", {}, 1, "alice")
        assert await store.status(job.id, "bob") is None
        assert await store.result(job.id, "bob") is None
        assert await store.cancel(job.id, "bob") is None
        assert (await store.status(job.id, "alice")).status != JobState.CANCELLED
    run(scenario)


def test_cancel_queued_and_running_jobs():
    async def scenario(store, fake):
        running = await store.submit("generate", {}, 1, "alice")
        queued = await store.submit("generate", {}, 1, "alice")
        await settle()
        answer = await store.cancel(queued.id, "alice")
        assert answer["status"] == "cancelled" and answer["cancel_requested"]
        answer = await store.cancel(running.id, "alice")
        assert answer["status"] == "running" and answer["cancel_requested"]
        # the replica hears it at its next progress report and stops
        assert await store.progress(running.id, 0.5, "extracting the mesh") is True
        fake.release(running.id, CANCELLED)
        await settle()
        assert (await store.status(running.id, "alice")).status == JobState.CANCELLED
        assert fake.started == [running.id]  # the cancelled queued job never reached a replica
    run(scenario)


def test_a_dead_replica_fails_its_job_clearly_and_the_next_job_runs():
    async def scenario(store, fake):
        first = await store.submit("generate", {}, 1, "alice")
        second = await store.submit("generate", {}, 1, "alice")
        await settle()
        fake.die(first.id)
        await settle()
        st = await store.status(first.id, "alice")
        assert st.status == JobState.ERROR and st.error[0] == 502
        assert "replica running this job (pid 4242) stopped before it finished" in st.error[1]
        assert "submit the job again" in st.error[1]
        assert fake.started == [first.id, second.id]
        fake.release(second.id)
        await settle()
        assert (await store.status(second.id, "alice")).status == JobState.DONE
        assert store.replica_failures == 1
    run(scenario)


def test_with_one_retry_a_dead_replicas_job_runs_again_first():
    async def scenario(store, fake):
        first = await store.submit("generate", {}, 1, "alice")
        other = await store.submit("generate", {}, 1, "bob")
        await settle()
        fake.die(first.id)
        await settle()
        assert fake.started == [first.id, first.id]  # again, before bob's (it was its turn)
        assert (await store.status(other.id, "bob")).queue_position == 0
        fake.die(first.id)  # a second death is final
        await settle()
        assert (await store.status(first.id, "alice")).status == JobState.ERROR
    run(scenario, retries=1)


def test_shutdown_answers_every_waiting_client():
    async def scenario(store, fake):
        running = await store.submit("generate", {}, 1, "alice")
        queued = await store.submit("generate", {}, 1, "bob")
        await settle()
        waiter = asyncio.create_task(store.status(running.id, "alice", since=-1, wait=10))
        await settle()
        assert await store.shutdown() == 2
        st = await asyncio.wait_for(waiter, 1)
        assert st.status == JobState.CANCELLED and "server is stopping" in st.message
        assert (await store.status(queued.id, "bob")).status == JobState.CANCELLED
        assert await store.closing()
        with pytest.raises(Refused) as e:
            await store.submit("generate", {}, 1, "alice")
        assert e.value.status == 503 and "shutting down" in e.value.message
    run(scenario)


def test_a_job_a_replica_has_taken_but_not_yet_started_is_next_in_line():
    """Between dispatch and the replica's first progress report a job is still queued, out of the
    queue: it reports position 0 (no job runs before it), in its status and in /v1/info alike."""
    class Silent(FakeReplicas):
        async def dispatch(self, spec: dict) -> Outcome:  # a replica slow to send its first report
            self.started.append(spec["id"])
            fut = self.gates[spec["id"]] = asyncio.get_running_loop().create_future()
            return await fut

    async def main():
        fake = Silent(1)
        store = JobStore(fake.dispatch, fake.replicas)
        fake.store = store
        await store.start()
        try:
            job = await store.submit("generate", {"n": 0}, 1, "bob")
            later = await store.submit("generate", {"n": 1}, 1, "bob")
            await settle()
            assert fake.started == [job.id]
            st = await store.status(job.id, "bob")
            assert st.status == JobState.QUEUED and st.queue_position == 0
            assert (await store.status(later.id, "bob")).queue_position == 0  # next in the queue itself
            yours = (await store.info("bob"))["queue"]["yours"]
            assert [(j["id"], j["status"], j["queue_position"]) for j in yours] == [
                (job.id, "queued", 0), (later.id, "queued", 0)]
            fake.release(job.id)
            await settle()
            assert (await store.status(job.id, "bob")).status == JobState.DONE
        finally:
            await store.shutdown()

    asyncio.run(main())
