"""The reconciler's decisions as a pure function: no process, no file, no
clock but the `now` each test passes."""
import pytest

from runtime.decide import (KILL_MARGIN, LEFTOVER_GRACE, SHIM_CRASH_LOOP, SHIM_STABLE, Adopt, Book,
                            Kill, KillLeftovers, MarkStopped, MarkStopping, Observed, Report,
                            ShimDied, Spawn, Start, Stop, TermLeftovers, Wait, decide, delay,
                            start_failed, started)

GRACE = 10.0


def seen(shim=None, recorded=None, state="running", **dead):
    return Observed(state=state, recorded_pid=recorded, shim=shim, **dead)


def run(observed, book=None, now=100.0):
    return decide("run", observed, book, now, GRACE)


def test_a_new_instance_is_started_and_its_shim_remembered():
    d = run(seen(state="new"))
    assert d.actions == (Start(1),) and d.busy
    book = started(d.book, 4242, 100.0)
    assert book.spawn == Spawn(4242, 100.0, 0)


def test_a_live_shim_is_reported_and_adopted_when_the_store_names_another():
    d = run(seen(shim=7, recorded=7))
    assert d.actions == (Report(7),) and not d.busy
    assert d.book.spawn == Spawn(7, 0.0)          # adopted: started long ago
    d = run(seen(shim=7, recorded=None))          # a daemon that died before recording it
    assert d.actions == (Adopt(7), Report(7))


def test_failures_are_forgotten_once_a_shim_lived_long_enough():
    book = Book(spawn=Spawn(7, 100.0, failures=2))
    assert run(seen(shim=7, recorded=7), book, 100.0 + SHIM_STABLE - 1).book.spawn.failures == 2
    assert run(seen(shim=7, recorded=7), book, 100.0 + SHIM_STABLE).book.spawn.failures == 0


def test_a_shim_killed_once_after_it_reported_is_replaced_at_once():
    book = Book(spawn=Spawn(7, 0.0))
    d = run(seen(reported=True, exit_code=-9), book, 100.0)
    died, start = d.actions
    assert died == ShimDied(7, -9, failures=1, delay=0.0, reported=True, state="starting")
    assert start == Start(2)
    assert d.book.spawn == Spawn(None, 0.0, 1, 100.0)


def test_a_shim_that_never_reported_backs_off_then_crash_loops():
    """Dying before SHIM_STABLE again and again: 1 s, 2 s, 4 s apart, backoff,
    then crashed from the third failure on, however many passes run."""
    book, now, states, starts = None, 100.0, [], []
    for _ in range(200):
        d = run(seen(state="starting"), book, now)
        for action in d.actions:
            if isinstance(action, ShimDied):
                states.append(action.state)
            if isinstance(action, Start):
                starts.append(now)
                d = type(d)(d.actions, started(d.book, 1000 + len(starts), now))
        book = d.book
        now += 0.25
        if len(starts) == 4:
            break
    assert states == ["backoff", "backoff", "crashed"]
    # Each death is seen one pass (0.25 s) after its start, then the delay.
    assert [b - a for a, b in zip(starts, starts[1:])] == [1.25, 2.25, 4.25]
    assert book.spawn.failures == SHIM_CRASH_LOOP
    assert [delay(n) for n in (0, 1, 2, 3, 6, 7, 20)] == [0, 1, 2, 4, 30, 30, 30]


def test_waiting_out_a_backoff_does_nothing_else():
    book = Book(spawn=Spawn(None, 100.0, 2, retry_at=102.0))
    d = run(seen(state="backoff", ran_before=True, leftovers=(55,)), book, 101.0)
    assert d.actions == (Wait("backoff"),) and d.busy and d.book == book


def test_a_start_that_fails_backs_off():
    book, state = start_failed(None, 100.0)
    assert book.spawn == Spawn(None, 100.0, 1, 101.0) and state == "backoff"
    book, state = start_failed(book, 101.0)
    book, state = start_failed(book, 103.0)
    assert book.spawn.failures == 3 and state == "crashed"
    assert run(seen(state="crashed"), book, 106.9).actions == (Wait("backoff"),)
    assert run(seen(state="crashed"), book, 107.0).actions == (Start(4),)


def test_leftovers_of_a_dead_shim_get_term_then_kill_before_a_new_start():
    book = Book(spawn=Spawn(7, 0.0))
    d = run(seen(reported=True, ran_before=True, leftovers=(55, 56)), book, 100.0)
    assert d.actions == (ShimDied(7, None, 1, 0.0, True, "starting"), TermLeftovers((55, 56)))
    # Still there within the grace: wait; no second SIGTERM.
    d = run(seen(state="starting", ran_before=True, leftovers=(55,)), d.book, 101.0)
    assert d.actions == (Wait("leftovers"),)
    # Past it: SIGKILL, then the new shim, in the same pass.
    d = run(seen(state="starting", ran_before=True, leftovers=(55,)), d.book,
            100.0 + LEFTOVER_GRACE)
    assert d.actions == (KillLeftovers((55,)), Start(2)) and d.book.leftovers_termed is None


def test_leftovers_that_finish_in_their_grace_need_no_kill():
    book = Book(spawn=Spawn(None, 0.0, 1), leftovers_termed=100.0)
    d = run(seen(state="starting", ran_before=True), book, 100.5)
    assert d.actions == (Start(2),)


def test_no_leftovers_are_looked_for_where_no_shim_ever_ran():
    d = run(seen(state="new", ran_before=False, leftovers=(55,)))
    assert d.actions == (Start(1),)


def stop(observed, book=None, now=100.0):
    return decide("stop", observed, book, now, GRACE)


def test_stop_sends_sigterm_once_then_sigkill_after_the_grace():
    d = stop(seen(shim=7, recorded=7, state="running"), Book(spawn=Spawn(7, 0.0)))
    assert d.actions == (Stop(7), MarkStopping()) and d.book == Book(stop_sent=100.0)
    assert stop(seen(shim=7, state="stopping"), d.book, 100.0 + GRACE).actions == \
        (Wait("stopping"),)
    assert stop(seen(shim=7, state="stopping"), d.book, 100.1 + GRACE + KILL_MARGIN).actions == \
        (Kill(7),)
    assert stop(seen(shim=7, state="stopping")).actions == (Stop(7),)   # already said stopping


def test_an_instance_without_a_shim_is_stopped_and_forgotten():
    d = stop(seen(state="stopping"), Book(stop_sent=90.0))
    assert d.actions == (MarkStopped(),) and d.book is None and not d.busy


@pytest.mark.parametrize("desired", ["pending", "something else"])
def test_instances_not_yet_wanted_are_left_alone(desired):
    assert decide(desired, seen(state="new"), None, 100.0, GRACE).actions == ()


def test_run_again_after_a_stop_forgets_the_sigterm():
    d = run(seen(shim=7, recorded=7), Book(stop_sent=1.0))
    assert d.book.stop_sent is None
