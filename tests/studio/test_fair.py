"""The studio's fair queue: round-robin over users, and queue positions that match the real order."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.studio.fair import FairQueue


def drain(q: FairQueue) -> list:
    out = []
    while (nxt := q.pop()) is not None:
        out.append(nxt[1])
    return out


def test_one_users_batch_does_not_starve_another():
    q: FairQueue[str] = FairQueue()
    for i in range(16):
        q.push("a", f"a{i}")
    q.push("b", "b0")
    assert q.position("b", "b0") == 1  # behind one of a's, not sixteen
    order = drain(q)
    assert order.index("b0") == 1 and order[:3] == ["a0", "b0", "a1"]
    assert len(q) == 0 and q.lengths() == {}


def test_round_robin_between_three_users_and_express_lane():
    q: FairQueue[str] = FairQueue()
    for u, n in (("a", 3), ("b", 2), ("c", 1)):
        for i in range(n):
            q.push(u, f"{u}{i}")
    q.push("c", "near", express=True)
    assert q.lengths() == {"a": 3, "b": 2, "c": 1, "": 1}
    assert drain(q) == ["near", "a0", "b0", "c0", "a1", "b1", "a2"]


def test_remove_and_retry_at_the_front():
    q: FairQueue[str] = FairQueue()
    for i in range(3):
        q.push("a", f"a{i}")
    q.push("b", "b0")
    assert q.remove("a", "a1") and not q.remove("a", "a1") and not q.remove("b", "zz")
    assert q.remove("b", "b0") and q.lengths() == {"a": 2}
    q.push("a", "again", front=True)
    assert drain(q) == ["again", "a0", "a2"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.booleans()), min_size=1, max_size=40),
       st.integers(0, 10))
def test_positions_are_the_order_items_are_served_in(ops, pops):
    """Whatever was pushed and popped before, every queued item's position is its index in the order
    the queue then serves them."""
    q: FairQueue[tuple[str, int]] = FairQueue()
    for n, (user, express) in enumerate(ops):
        q.push(user, (user, n), express=express)
        if n == pops:
            for _ in range(min(pops, 3)):
                q.pop()
    queued = {}
    for user, n in [(u, n) for n, (u, _) in enumerate(ops)]:
        express = ops[n][1]
        p = q.position(user, (user, n), express)
        if p is not None:
            queued[(user, n)] = p
    order = drain(q)
    assert {item: order.index(item) for item in order} == queued


def test_a_user_whose_queue_empties_between_submissions_keeps_its_count():
    """Jobs dispatched as fast as one user submits them empty that user's queue each time; a user who
    arrives later must still go next, not behind the whole batch submitted since."""
    q: FairQueue[str] = FairQueue()
    q.push("a", "a0")
    q.pop()
    q.push("a", "a1")
    q.pop()  # two replicas busy
    for i in range(2, 16):
        q.push("a", f"a{i}")
    q.push("b", "b0")
    assert q.position("b", "b0") == 0
    assert [item for _, item in (q.pop(), q.pop(), q.pop())] == ["b0", "a2", "a3"]
