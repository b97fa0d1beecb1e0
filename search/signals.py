"""How the commands stop: Ctrl-C, SIGTERM and a launcher's death, each as a
KeyboardInterrupt (exit 130, the running trial failed with its reason, runs KILLED).

- `sigterm_as_interrupt`: SIGTERM stops like Ctrl-C (the CLI holds it from its start).
- `deferred_interrupts`: a stop while a block writes to the stores waits for its end.
- `stop_with_launcher`: a worker whose launcher died (SIGKILL, the out-of-memory killer)
  stops too, instead of running its whole quota with no one to report to.
- `honour_sigint`: a worker started as a shell's background job still stops on SIGINT.
- `interrupts_never_lost`: a stop that lands in a garbage-collection callback is not lost.
- `stop_in_flight`: a stop that surfaced as another error (inside a C extension) is a stop.
"""

import contextlib
import os
import signal
import sys
import threading
import time

LAUNCHER_ENV = "KERAS_RELU_LAUNCHER"  # a launched worker: its launcher's pid
PR_SET_PDEATHSIG = 1  # Linux prctl(2): a signal for this process when its parent dies
USER_STOP = "interrupted by the user"


class Interrupted(KeyboardInterrupt):
    """A stop that is not the user's, with its reason."""


def stop_reason(err):
    """Why a KeyboardInterrupt stopped a trial: an `Interrupted`'s reason, else the user."""
    return str(err) or USER_STOP


_last_stop = [None]  # the KeyboardInterrupt this process's last stop signal raised


def _stop(err):
    _last_stop[0] = err
    raise err


def stop_in_flight():
    """The KeyboardInterrupt a stop signal raised in this process, or None. Raised inside
    TensorFlow's C++ step it can surface as another error (`SystemError: ... bad argument
    to internal function`): a trial that fails after a stop was stopped, not failed."""
    return _last_stop[0]


def _interrupt(signum, frame):
    _stop(KeyboardInterrupt())


def honour_sigint():
    """Make SIGINT raise KeyboardInterrupt even if this process inherited it ignored (a
    shell starts background jobs so): launchers stop their workers with SIGINT."""
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.default_int_handler):
        signal.signal(signal.SIGINT, _interrupt)


def _main_thread():
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt inside the block, so it stops like Ctrl-C, and both
    are recorded for `stop_in_flight` (in the main thread; elsewhere Python allows no
    signal handler and nothing changes)."""
    if not _main_thread():
        yield
        return
    _last_stop[0] = None  # an earlier block's stop (in a notebook) is not this one's
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def deferred_interrupts():
    """A first SIGINT, SIGTERM or SIGHUP (a launcher gone) inside the block waits for its
    end, then stops as it would have (a second one does not wait), so that what the block
    writes to the stores (a new study and its control trials, the parent run, a trial's
    run) is made whole or not begun; in the main thread, for the signals that stop here."""
    got = []

    def later(signum, frame):
        if got:
            previous[signum](signum, frame)
        got.append(signum)

    previous = {}
    if _main_thread():
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                    if callable(signal.getsignal(s))}  # not one ignored or left by default
    for signum in previous:
        signal.signal(signum, later)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if got:
        previous[got[0]](got[0], None)


@contextlib.contextmanager
def interrupts_never_lost():
    """A stop that lands while Python runs a garbage-collection callback or a `__del__`
    (JAX registers one) raises there, where Python prints "Exception ignored ...
    KeyboardInterrupt" and goes on: the stop would be lost. Inside the block such a
    KeyboardInterrupt is sent again, as its signal, a moment later (from a thread: sent
    at once, it would raise in the hook), and raises where the program runs then."""
    previous = sys.unraisablehook

    def hook(unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            return previous(unraisable)
        again = signal.SIGHUP if isinstance(unraisable.exc_value, Interrupted) else signal.SIGINT
        threading.Timer(0.05, os.kill, (os.getpid(), again)).start()

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _launcher_gone(signum, frame):
    _stop(Interrupted("interrupted: its launcher died"))


def stop_with_launcher():
    """In a worker that a launcher started (its pid in `LAUNCHER_ENV`): stop, as on
    SIGTERM, as soon as the launcher is gone. On Linux the kernel sends SIGHUP when the
    parent dies (prctl PR_SET_PDEATHSIG); elsewhere a thread watches the parent pid."""
    launcher = os.environ.get(LAUNCHER_ENV, "")
    if not launcher.isdigit() or not _main_thread():
        return
    signal.signal(signal.SIGHUP, _launcher_gone)
    if not _parent_death_signal(signal.SIGHUP):
        threading.Thread(target=_watch_parent, args=(int(launcher),), daemon=True,
                         name="launcher-watch").start()
    if os.getppid() != int(launcher):  # it died before the kernel was asked to tell
        _launcher_gone(signal.SIGHUP, None)


def _parent_death_signal(signum):
    """Ask Linux for `signum` when this process's parent dies; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(launcher, every=1.0):
    while os.getppid() == launcher:
        time.sleep(every)
    os.kill(os.getpid(), signal.SIGHUP)
