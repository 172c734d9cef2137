"""The sliding window of apps.core.ratelimit: exact over the window, atomic in Redis."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from apps.core import ratelimit


def fake_clock(monkeypatch: Any, start: float) -> dict[str, float]:
    clock = {"now": start}
    monkeypatch.setattr(
        ratelimit,
        "time",
        SimpleNamespace(time=lambda: clock["now"], monotonic=lambda: clock["now"]),
    )
    return clock


def test_sliding_window_counts_the_last_window_only(monkeypatch: Any) -> None:
    clock = fake_clock(monkeypatch, 1_000_000.0)
    assert ratelimit.sliding_hit("t:sw", 2, 60) is None
    clock["now"] += 10
    assert ratelimit.sliding_hit("t:sw", 2, 60) is None
    clock["now"] += 20
    assert ratelimit.sliding_hit("t:sw", 2, 60) == 30  # the first hit leaves at +60
    clock["now"] += 30.5
    assert ratelimit.sliding_hit("t:sw", 2, 60) is None  # the first one left
    assert ratelimit.sliding_hit("t:sw", 2, 60) == 10  # the second leaves at +70


def test_local_sliding_window_is_the_same_rule(monkeypatch: Any) -> None:
    clock = fake_clock(monkeypatch, 500.0)
    assert [ratelimit.local_sliding_hit("t:lw", 2, 60) for _ in range(2)] == [None, None]
    clock["now"] += 30
    assert ratelimit.local_sliding_hit("t:lw", 2, 60) == 30
    clock["now"] += 30.5
    assert ratelimit.local_sliding_hit("t:lw", 2, 60) is None


def test_concurrent_hits_never_exceed_the_limit() -> None:
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            result = ratelimit.sliding_hit("t:race", 25, 60) is None
            with lock:
                allowed.append(result)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 80 and sum(allowed) == 25
