"""The loops' wakeups: a loop off an offer's path settles after being woken, and then takes in one pass
what was signalled meanwhile; the offer's own loops (campaign consumer, dispatcher) never wait."""

from __future__ import annotations

import threading
import time

from geofence.service.app import create_app
from geofence.service.loops import Loop, LoopThread
from geofence.service.wakeup import Wakeup


def _passes_for_three_signals(settle_s: float) -> int:
    """Passes a loop made for three signals 50 ms apart (after its first pass, at start)."""
    passes: list[float] = []
    started = threading.Event()

    def work() -> bool:
        passes.append(time.monotonic())
        started.set()
        return False

    wakeup = Wakeup()
    thread = LoopThread(Loop("test", work, wakeup, fallback_s=60.0, settle_s=settle_s))
    thread.start()
    try:
        assert started.wait(5)  # the pass at start, for what was committed while no one ran
        for _ in range(3):
            time.sleep(0.05)
            wakeup.set()
        time.sleep(0.5 + settle_s)
        return len(passes) - 1
    finally:
        thread.stop()
        thread.join(5)


def test_a_settling_loop_takes_signals_that_come_while_it_settles_in_one_pass():
    assert _passes_for_three_signals(settle_s=1.0) == 1


def test_a_loop_without_settling_passes_at_each_signal():
    assert _passes_for_three_signals(settle_s=0.0) == 3


def test_only_the_logs_consumers_off_an_offers_path_settle(settings, engine):
    settings.scheduler.side_loops_settle_s = 0.25
    runtime = create_app(settings, engine=engine).state.runtime
    settle = {loop.id: loop.settle_s for loop in runtime.loops}
    assert settle["consumer:campaigns"] == 0 and settle["dispatch"] == 0  # the offer's path
    assert {k for k, v in settle.items() if v == 0.25} == {
        "consumer:crm_export", "consumer:webhooks", "consumer:store_arrivals", "consumer:orders",
    }
