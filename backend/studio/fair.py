"""Per-user queues served in turn: one user's 500-prompt batch delays another user's single job by
about one job, not by 500.

Each user has a count of jobs served; the next job comes from the waiting user with the lowest
count, the one served least recently on a tie. A user who starts waiting is brought up to the lowest
count among the users already waiting (never down: a user whose queue just emptied between two
submissions keeps the count it had) and goes first on that tie: the newcomer waits for nobody's
batch, and cannot jump more than one round either (start-time fair queuing with equal weights). An
express lane (priority 0: quick lookups such as ``nearest``) is served before every user queue.
"""
from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        self._express: deque[T] = deque()
        self._queues: dict[str, deque[T]] = {}
        self._key: dict[str, tuple[int, int]] = {}  # waiting user -> (jobs served, when last served)
        self._served: dict[str, tuple[int, int]] = {}  # every user seen -> the same, kept while idle
        self._clock = itertools.count()
        self._newcomers = itertools.count(-(1 << 62))  # before anyone served, in order of arrival
        self._retries = itertools.count(-(1 << 63))  # before newcomers too

    def __len__(self) -> int:
        return len(self._express) + sum(len(q) for q in self._queues.values())

    def push(self, user: str, item: T, express: bool = False, front: bool = False) -> None:
        """Queue ``item`` for ``user``; ``front``: ahead of the user's other items, and the user gets
        back the turn it was served in (a job whose replica died runs again next)."""
        if express:
            (self._express.appendleft if front else self._express.append)(item)
            return
        q = self._queues.get(user)
        if q is None:
            q = self._queues[user] = deque()
            floor = min((k[0] for k in self._key.values()), default=0)
            before = self._served.get(user)
            self._key[user] = before if before is not None and before[0] >= floor else (floor, next(self._newcomers))
        if front:
            served, last = self._key[user]
            self._key[user] = (served - 1, next(self._retries))
        (q.appendleft if front else q.append)(item)

    def _next_user(self) -> str | None:
        return min(self._key, key=self._key.__getitem__) if self._key else None

    def pop(self) -> tuple[str | None, T] | None:
        """(user, item) to serve next (user None for the express lane), or None when empty."""
        if self._express:
            return None, self._express.popleft()
        user = self._next_user()
        if user is None:
            return None
        q = self._queues[user]
        item = q.popleft()
        self._served[user] = self._key[user] = (self._key[user][0] + 1, next(self._clock))
        if not q:  # not waiting until it queues again
            del self._queues[user], self._key[user]
        return user, item

    def remove(self, user: str, item: T, express: bool = False) -> bool:
        """Take a queued item out (a cancelled job); False if it was not queued."""
        if express:
            if item not in self._express:
                return False
            self._express.remove(item)
            return True
        q = self._queues.get(user)
        if q is None or item not in q:
            return False
        q.remove(item)
        if not q:
            del self._queues[user], self._key[user]
        return True

    def order(self) -> list[T]:
        """Every queued item, in the order they will be served if nothing else arrives."""
        out = list(self._express)
        heap = [(key, user) for user, key in self._key.items()]
        heapq.heapify(heap)
        index = dict.fromkeys(self._queues, 0)
        clock = itertools.count(1 << 62)  # later than every real turn so far
        while heap:
            (served, _), user = heapq.heappop(heap)
            q = self._queues[user]
            out.append(q[index[user]])
            index[user] += 1
            if index[user] < len(q):
                heapq.heappush(heap, ((served + 1, next(clock)), user))
        return out

    def position(self, user: str, item: T, express: bool = False) -> int | None:
        """How many items will be served before ``item`` if nothing else arrives (None: not queued)."""
        queued = self._express if express else self._queues.get(user)
        if queued is None or item not in queued:
            return None
        return self.order().index(item)

    def lengths(self) -> dict[str, int]:
        """Queued items per user (the express lane as ``""``, when it holds any)."""
        out = {u: len(q) for u, q in self._queues.items()}
        if self._express:
            out[""] = len(self._express)
        return out
