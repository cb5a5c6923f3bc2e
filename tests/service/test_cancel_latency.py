"""Cancel of a big job frees the server for the next one (issue 14): after cancelling a 512³ generate
while it extracts the mesh, the next 16³ generate answers within 2 s; while it waits, the client
says what for."""
import threading
import time

import pytest

from blender_att3d.client.base import Cancelled
from blender_att3d.client.http import HTTPClient
from blender_att3d.wire.job_state import JobState


@pytest.mark.slow  # a server on the demo model, run into the middle of a 512³ extraction
def test_after_cancelling_a_512_job_the_next_16_job_answers_within_2_s(start_own_server):
    srv = start_own_server()
    big, small = HTTPClient(srv.url, srv.token), HTTPClient(srv.url, srv.token)
    seen, outcome = [], []
    extracting = threading.Event()

    def progress(frac, message):
        seen.append(message)
        if message == "extracting the mesh":
            extracting.set()
        return False

    def run_big():
        try:
            big.generate("a red cube with a red ring around it", resolution=512, progress=progress)
            outcome.append("finished")
        except Cancelled:
            outcome.append("cancelled")

    t = threading.Thread(target=run_big)
    t.start()
    assert extracting.wait(120), seen
    time.sleep(0.1)  # inside the extraction (sparse: a 512³ one takes seconds here)
    t0 = time.monotonic()
    big.cancel()
    waits = []
    mesh = small.generate("a blue sphere", resolution=16, progress=lambda f, m: waits.append(m) and False)
    dt = time.monotonic() - t0
    t.join(120)
    assert outcome == ["cancelled"] and mesh.n_vertices > 0
    print(f"\nthe 16³ job answered {dt:.2f} s after the cancel")
    assert dt < 2.0, f"the next job answered {dt:.1f} s after the cancel (messages: {waits})"


def test_a_job_queued_after_a_cancel_says_what_it_waits_for():
    c = HTTPClient("http://127.0.0.1:9", "t" * 20, check=False)
    queued = {"status": JobState.QUEUED, "message": "queued", "queue_position": 0}
    assert c._message(queued) == "queued"
    assert c._message({**queued, "queue_position": 2}) == "queued behind 2 other jobs"
    c._cancelled_at = time.monotonic()  # this client cancelled a job a moment ago
    assert c._message(queued) == "waiting for the backend to stop the cancelled job"
    assert c._message({"status": JobState.RUNNING, "message": "extracting the mesh"}) == "extracting the mesh"
    assert c._cancelled_at is None  # ours runs: the cancelled one is out of the way
    assert c._message(queued) == "queued"
