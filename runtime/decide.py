"""What the runtime does about one instance: a pure function of what the
store wants, what was observed, and the runtime's own bookkeeping.

`decide()` reads no file, signals no process and keeps nothing: the
reconciler (runtime/reconcile.py) observes (is the shim alive, did it ever
report, what did a dead one leave running), calls it, carries the actions
out in order and keeps the `Book` it returns for the next pass. So every
rule below is unit-tested without a process:

- a live shim is adopted if the store names another pid, and its report is
  recorded; its failures are forgotten once it has lived SHIM_STABLE;
- a shim that died after it reported, once, is replaced at once; one that
  dies again before SHIM_STABLE, or never reported (a bad spec, a broken
  interpreter), is started again after an exponential backoff, reported
  `backoff`, then `crashed` from SHIM_CRASH_LOOP failures in a row;
- before a new shim starts where one ran, what the dead one left running
  gets SIGTERM, LEFTOVER_GRACE to finish, then SIGKILL;
- a shim that should stop gets SIGTERM, then SIGKILL once the stop grace
  (plus KILL_MARGIN) is over; the instance is stopped when no shim is left.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from dotcloud.desired import Desired, InstanceState

# A shim that dies sooner than this after its start died unstable (backoff);
# failures are forgotten once a shim has lived this long.
SHIM_STABLE = 10.0
SHIM_BACKOFF_MAX = 30.0
SHIM_CRASH_LOOP = 3
# How long what a dead shim left running may take to finish its requests.
LEFTOVER_GRACE = 2.0
# A stopping shim has the stop grace to end its processes, and this to exit itself.
KILL_MARGIN = 5.0


@dataclass(frozen=True)
class Spawn:
    """The last shim start of an instance."""
    pid: int | None        # None once it was found dead (or never started)
    at: float              # monotonic time of the start (0.0: adopted, started long ago)
    failures: int = 0      # deaths in a row before SHIM_STABLE (reset once one lives it)
    retry_at: float = 0.0  # no new start before this


@dataclass(frozen=True)
class Book:
    """The runtime's bookkeeping of one instance between passes."""
    spawn: Spawn | None = None
    stop_sent: float | None = None        # when its shim got SIGTERM
    leftovers_termed: float | None = None  # when what a dead shim left got SIGTERM


@dataclass(frozen=True)
class Observed:
    """What the reconciler saw of one instance in this pass."""
    state: str                      # what the store last recorded
    recorded_pid: int | None        # the shim pid the store names
    shim: int | None                # the live shim's pid; None: none alive
    # Only looked at when no shim is alive:
    reported: bool = False          # the last started shim wrote its status
    exit_code: int | None = None    # how that shim ended, when the daemon reaped it
    ran_before: bool = False        # some shim ran for this instance (its status file exists)
    leftovers: tuple[int, ...] = ()  # processes a dead shim left running (found by their tag)


# -- actions, carried out in order --------------------------------------------

@dataclass(frozen=True)
class Adopt:
    """Record `pid` as the instance's shim (one the store did not know of)."""
    pid: int


@dataclass(frozen=True)
class Report:
    """Record what the live shim `pid` reports (state, restarts, exits)."""
    pid: int


@dataclass(frozen=True)
class ShimDied:
    """The last started shim is gone: say so, and record `state`."""
    pid: int
    code: int | None        # its exit status, when reaped
    failures: int
    delay: float            # seconds until the next start
    reported: bool
    state: InstanceState


@dataclass(frozen=True)
class Wait:
    reason: str             # backoff, leftovers, stopping


@dataclass(frozen=True)
class TermLeftovers:
    pids: tuple[int, ...]


@dataclass(frozen=True)
class KillLeftovers:
    pids: tuple[int, ...]


@dataclass(frozen=True)
class Start:
    """Write the shim's spec and start it; then `started` or `start_failed`."""
    attempt: int


@dataclass(frozen=True)
class Stop:
    pid: int


@dataclass(frozen=True)
class Kill:
    pid: int


@dataclass(frozen=True)
class MarkStopping:
    pass


@dataclass(frozen=True)
class MarkStopped:
    pass


Action = (Adopt | Report | ShimDied | Wait | TermLeftovers | KillLeftovers | Start | Stop | Kill
          | MarkStopping | MarkStopped)


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    book: Book | None       # None: nothing to remember of this instance

    @property
    def busy(self) -> bool:
        """Whether a quick next pass pays (a Report says so itself, from its state)."""
        return any(not isinstance(a, (Adopt, Report, MarkStopped)) for a in self.actions)


def delay(failures: int) -> float:
    return 0.0 if failures == 0 else min(2.0 ** (failures - 1), SHIM_BACKOFF_MAX)


def failed_state(failures: int) -> InstanceState:
    return InstanceState.CRASHED if failures >= SHIM_CRASH_LOOP else InstanceState.BACKOFF


def decide(desired: str, observed: Observed, book: Book | None, now: float,
           stop_grace: float) -> Decision:
    """The actions for one instance, and the bookkeeping to keep. `now` is
    monotonic time; `stop_grace` the settings' (the shim's own grace)."""
    book = book or Book()
    if desired == Desired.RUN:
        if observed.shim is not None:
            return _running(observed, book, now)
        return _dead(observed, book, now)
    if desired == Desired.STOP:
        return _stopping(observed, book, now, stop_grace)
    return Decision((), book)      # pending: its postinstall has not run yet


def started(book: Book | None, pid: int, now: float) -> Book:
    """The bookkeeping after a Start that spawned shim `pid`."""
    failures = book.spawn.failures if book and book.spawn else 0
    return replace(book or Book(), spawn=Spawn(pid, now, failures))


def start_failed(book: Book | None, now: float) -> tuple[Book, InstanceState]:
    """The bookkeeping, and the state to record, after a Start that failed."""
    failures = (book.spawn.failures if book and book.spawn else 0) + 1
    return (replace(book or Book(), spawn=Spawn(None, now, failures, now + delay(failures))),
            failed_state(failures))


def _running(observed: Observed, book: Book, now: float) -> Decision:
    actions: list[Action] = []
    if observed.recorded_pid != observed.shim:
        actions.append(Adopt(observed.shim))
    actions.append(Report(observed.shim))
    spawn = book.spawn
    if spawn is None:
        spawn = Spawn(observed.shim, 0.0)       # adopted: started long ago
    elif spawn.failures and now - spawn.at >= SHIM_STABLE:
        spawn = replace(spawn, failures=0)
    return Decision(tuple(actions), replace(book, spawn=spawn, stop_sent=None))


def _dead(observed: Observed, book: Book, now: float) -> Decision:
    actions: list[Action] = []
    book = replace(book, stop_sent=None)
    spawn = book.spawn
    if spawn is not None and spawn.pid is not None:
        # A shim that dies again before it lived SHIM_STABLE is restarted with
        # backoff, and one that never reported failed to start at all:
        # starting it at once would spin. One that ran and was killed once is
        # replaced without delay.
        failures = spawn.failures + 1 if now - spawn.at < SHIM_STABLE else 1
        wait = 0.0 if observed.reported and failures == 1 else delay(failures)
        actions.append(ShimDied(spawn.pid, observed.exit_code, failures, wait, observed.reported,
                                failed_state(failures) if wait else InstanceState.STARTING))
        spawn = Spawn(None, spawn.at, failures, now + wait)
        book = replace(book, spawn=spawn)
    if spawn is not None and now < spawn.retry_at:
        return Decision((*actions, Wait("backoff")), book)
    if observed.ran_before:
        # What the dead shim left running (gunicorn's workers) holds the port.
        if book.leftovers_termed is None:
            if observed.leftovers:
                return Decision((*actions, TermLeftovers(observed.leftovers)),
                                replace(book, leftovers_termed=now))
        elif now - book.leftovers_termed < LEFTOVER_GRACE and observed.leftovers:
            return Decision((*actions, Wait("leftovers")), book)
        else:
            if observed.leftovers:
                actions.append(KillLeftovers(observed.leftovers))
            book = replace(book, leftovers_termed=None)
    actions.append(Start((spawn.failures if spawn else 0) + 1))
    return Decision(tuple(actions), book)


def _stopping(observed: Observed, book: Book, now: float, stop_grace: float) -> Decision:
    if observed.shim is None:
        return Decision((MarkStopped(),), None)
    if book.stop_sent is None:
        actions: tuple[Action, ...] = (Stop(observed.shim),)
        if observed.state != InstanceState.STOPPING:
            actions += (MarkStopping(),)
        return Decision(actions, Book(stop_sent=now))
    if now - book.stop_sent > stop_grace + KILL_MARGIN:
        return Decision((Kill(observed.shim),), book)
    return Decision((Wait("stopping"),), book)
