"""What the scripts of the peer comparison share (see README.md here).

Each peer_<name>.py defines a subclass of Peer, with run() to measure and
stop() to take down what it started, and ends with

    sys.exit(peerlib.main(ThePeer))

This module has:

  * the command line every peer script takes, its signal handling and its
    output: one JSON object per metric on stdout (emit), progress on stderr
    (log), one clear stderr line last when the script fails (main);
  * /proc helpers, and Tracked: the processes a script started or saw, each
    by pid and start time, so that it is never confused with a later
    process that got the same pid; stopped by pid, TERM then KILL;
  * time_command: the one way to time a whole command-line process, used
    for every peer's shell lookup and for peers.py's /bin/true floor;
  * Probe: a C probe (probe_<name>.c with probe.h) compiled at run time and
    its shared commands: wait until workers are up, restart and lookup
    loops;
  * ScanDirPeer: what s6 and runit share, a scanner process over a
    directory of service directories, one supervisor process per service.

Python 3 standard library only.
"""

import argparse
import collections
import ctypes
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[2]  # the top of the source tree
SEED = 42  # every random choice of keys, in Python and in the probes

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_peer = "peer"  # the running peer's name, set by main()


# -- output -----------------------------------------------------------------


def log(msg):
    """Progress, on stderr."""
    print(f"peer_{_peer}: {msg}", file=sys.stderr, flush=True)


def emit(metric, value, note=""):
    """One result line of the contract, on stdout. Floats are rounded to 4
    decimals (the smallest figures are tenths of a microsecond)."""
    if isinstance(value, float):
        value = round(value, 4)
    print(json.dumps({"peer": _peer, "metric": metric, "value": value,
                      "note": note}), flush=True)


class Failure(Exception):
    """A reason the run cannot go on; main() prints it as one line."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP reached the script."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum, _frame):
    raise Interrupted(signum)


# -- figures ----------------------------------------------------------------


def key_names(n):
    """w0000 .. w{n-1}: zero-padded to 4 digits, more when n > 10000."""
    width = max(4, len(str(n - 1)))
    return [f"w{i:0{width}d}" for i in range(n)]


def nearest_rank(values, q):
    """The q-quantile (0 < q <= 1) of VALUES by nearest rank."""
    s = sorted(values)
    return s[max(1, math.ceil(q * len(s))) - 1]


median = statistics.median


def runs_note(values, fmt="{:.1f}"):
    """'Runs: 1.2, 3.4' for a note."""
    return "Runs: " + ", ".join(fmt.format(v) for v in values)


def emit_restarts(lat_us, lost, note):
    """restart_p50_us (with NOTE, which says what was timed), _p99_us,
    _max_us and _n, from the latencies of the crashes timed (us)."""
    if not lat_us:
        raise Failure(f"restarts: none seen ({lost} lost)")
    lat = sorted(lat_us)
    p50, p99 = nearest_rank(lat, 0.50), nearest_rank(lat, 0.99)
    emit("restart_p50_us", p50, note)
    emit("restart_p99_us", p99, f"nearest rank over the {len(lat)} crashes "
         "timed; see restart_p50_us")
    emit("restart_max_us", lat[-1], "see restart_p50_us")
    emit("restart_n", len(lat), f"{lost} lost (restarts not seen in time)")
    log(f"restarts: p50 {p50:.0f} us, p99 {p99:.0f} us, max {lat[-1]:.0f} "
        f"us, {lost} lost")


def emit_memory(pids, note, procs_note):
    """mem_kib (Pss summed over PIDS, the supervisor's own processes),
    mem_procs and rss_main_kib (PIDS[0] is the main one). Returns
    {pid: Pss KiB}."""
    pss = {pid: smaps_rollup(pid)["Pss"] for pid in pids}
    total = sum(pss.values())
    emit("mem_kib", total, note)
    emit("mem_procs", len(pids), procs_note)
    emit("rss_main_kib", smaps_rollup(pids[0])["Rss"],
         f"Rss of {comm(pids[0]) or 'the main process'}")
    log(f"memory: {total} KiB Pss in {len(pids)} processes")
    return pss


# -- /proc ------------------------------------------------------------------

# Fields 3, 4, 5, 6 and 22 of /proc/PID/stat.
Stat = collections.namedtuple("Stat", "state ppid pgrp sid start")


def proc_stat(pid):
    """PID's Stat, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces or ')': split after the last ')'.
    f = data[data.rindex(b")") + 2:].split()
    return Stat(f[0].decode(), int(f[1]), int(f[2]), int(f[3]), int(f[19]))


def all_procs():
    """{pid: Stat} of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def children_of(ppid):
    """The pids whose parent is PPID (zombies included)."""
    return [p for p, st in all_procs().items() if st.ppid == ppid]


def cmdline(pid):
    """argv of PID ([] if gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace")
                    for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def comm(pid):
    """The command name of PID, or None."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def exe(pid):
    """The executable PID runs, or None."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def same_process(pid, start):
    """PID is still the process that started at START, and not a zombie."""
    st = proc_stat(pid)
    return st is not None and st.start == start and st.state not in "ZX"


def alive(pid):
    """kill(pid, 0) succeeds: the contract's definition of alive."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def smaps_rollup(pid):
    """{field: KiB} from /proc/PID/smaps_rollup (Rss, Pss, ...)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def pkg_version(pkg):
    """The installed version of Debian package PKG, or None."""
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 and r.stdout else None


# -- processes --------------------------------------------------------------


def _prctl(option, arg):
    return ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)


def pdeathsig(sig):
    """A preexec_fn: the child gets SIG when this script dies, even of
    SIGKILL, so that nothing it started outlives it for long."""
    return lambda: _prctl(PR_SET_PDEATHSIG, sig)


def set_subreaper():
    """Make this script a child subreaper: the orphans of what it started
    (workers that outlive their supervisor, say) become its children, to be
    killed and reaped by pid. False if the kernel refused."""
    try:
        return _prctl(PR_SET_CHILD_SUBREAPER, 1) == 0
    except OSError:
        return False


def reap_orphans(keep=()):
    """Reap the zombie children of this script, except the pids in KEEP
    (those of Popen objects, which reap their own)."""
    for p in children_of(os.getpid()):
        st = proc_stat(p)
        if p not in keep and st is not None and st.state == "Z":
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass


def kill_group(pgid):
    """SIGKILL process group PGID if any live process is still in it; the
    group of a process this script started in a session of its own.
    Returns how many there were."""
    rest = [p for p, st in all_procs().items()
            if st.pgrp == pgid and st.state not in "ZX"]
    if rest:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    return len(rest)


class Tracked:
    """The processes a script started or saw: pid -> (start time, what)."""

    def __init__(self):
        self.procs = {}

    def add(self, pid, what="worker"):
        """Remember PID (as the process it is now); False if it is gone."""
        if not pid or pid in self.procs:
            return bool(pid)
        st = proc_stat(pid)
        if st is None:
            return False
        self.procs[pid] = (st.start, what)
        return True

    def start(self, pid):
        return self.procs[pid][0]

    def live(self, pids=None, what=None):
        """Those of PIDS (default: all) still alive, optionally of one
        kind WHAT."""
        pids = self.procs if pids is None else pids
        return [p for p in pids if p in self.procs
                and (what is None or self.procs[p][1] == what)
                and same_process(p, self.procs[p][0])]

    def wait_gone(self, timeout, pids=None):
        """Wait up to TIMEOUT s for PIDS (default: all) to be gone, reaping
        any that are our orphans; returns those still alive."""
        end = time.monotonic() + timeout
        while True:
            reap_orphans()
            left = self.live(pids)
            if not left or time.monotonic() >= end:
                return left
            time.sleep(0.01)

    def kill(self, pids=None, grace=5.0):
        """SIGTERM PIDS (default: all) still alive, wait up to GRACE s,
        SIGKILL what is left and wait again; returns those still alive."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = self.live(pids)
            for p in left:
                try:
                    os.kill(p, sig)
                except OSError:
                    pass
            left = self.wait_gone(grace, left)
            if not left:
                return []
        return left

    def sweep(self, grace, after):
        """Once the supervisor AFTER has stopped: wait up to GRACE s for
        every process seen to be gone, then TERM and KILL, by pid, those
        that outlived it. Returns (outlived, still alive)."""
        outlived = self.wait_gone(grace)
        if outlived:
            log(f"{len(outlived)} processes outlived {after}: TERM, then "
                "KILL, by pid")
        return outlived, self.kill(outlived)


def wait_or_kill(p, name, timeout=60):
    """Wait up to TIMEOUT s for Popen P, asked to stop, to exit; SIGKILL it
    after that."""
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"{name} still there after {timeout} s: SIGKILL")
        p.kill()
        p.wait()


# -- timing a command-line process ------------------------------------------

Timed = collections.namedtuple("Timed", "us rc out err")


def time_command(argv, timeout=60, env=None, cwd=None):
    """Run ARGV once as a whole process and time it: the wall time from
    just before Popen (fork and exec) until it has exited and been waited
    for, its output read. Every peer's shell lookup is timed this way, and
    so is peers.py's /bin/true floor, so Python's own spawn cost is in each
    figure alike. The process runs in a session of its own, stdin
    /dev/null, stdout and stderr piped; its process group is killed if it
    runs over TIMEOUT s or a signal interrupts the wait. A Timed."""
    # communicate() with a timeout would wait for the exit by polling, with
    # sleeps from 0.5 ms up: a timer thread enforces the timeout instead,
    # started before the clock, and the wait is a plain blocking waitpid.
    pid, fired = [], []

    def expire():
        if pid:
            fired.append(True)
            try:
                os.killpg(pid[0], signal.SIGKILL)
            except OSError:
                pass

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        t0 = time.perf_counter_ns()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True, env=env, cwd=cwd)
        pid.append(p.pid)
        try:
            out, err = p.communicate()
        except BaseException:
            kill_group(p.pid)
            p.kill()
            p.wait()
            raise
        us = (time.perf_counter_ns() - t0) / 1000
    finally:
        timer.cancel()
    if fired:
        raise Failure(f"{' '.join(map(str, argv))[:120]}: still running "
                      f"after {timeout} s")
    return Timed(us, p.returncode, out.decode(errors="replace"),
                 err.decode(errors="replace"))


def floor_us(runs):
    """Median wall time of /bin/true timed as time_command times: what a
    process that does nothing costs."""
    return median([time_command(["/bin/true"]).us for _ in range(runs)])


def time_shell_lookups(runs, keys, argv_of, pids, parse=str.strip, env=None,
                       cwd=None, give_up=None, after_each=None):
    """The shell lookup of every peer: RUNS whole processes argv_of(key)
    over random keys, each timed by time_command and its output checked:
    parse(stdout) must be the key's pid PIDS[key] (as a string). GIVE_UP
    (n, us): stop once n have run if their median is over us. AFTER_EACH:
    called after each run. Returns the wall times (us)."""
    rnd = random.Random(SEED)
    times = []
    for _ in range(runs):
        if give_up and len(times) >= give_up[0] and median(times) > give_up[1]:
            break
        key = rnd.choice(keys)
        argv = argv_of(key)
        r = time_command(argv, env=env, cwd=cwd)
        if r.rc != 0 or parse(r.out) != str(pids[key]):
            raise Failure(f"`{' '.join(map(str, argv))[:160]}` printed "
                          f"{r.out.strip()[:100]!r} (exit {r.rc}; stderr "
                          f"{r.err.strip()[-200:]!r}), expected pid "
                          f"{pids[key]}")
        times.append(r.us)
        if after_each:
            after_each()
    log(f"shell lookup: median {median(times):.0f} us over {len(times)}")
    return times


# -- C ----------------------------------------------------------------------


def compile_c(src, out, cflags=(), libs=(), hint=""):
    """cc -Wall -Wextra -Werror -O2 SRC into OUT (probe.h is found next
    to the sources); Failure with cc's first lines if it fails."""
    cmd = ["cc", "-Wall", "-Wextra", "-Werror", "-O2", "-I", str(HERE),
           *map(str, cflags), "-o", str(out), str(src), *map(str, libs)]
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        raise Failure(f"unable to run cc: {e}") from None
    if r.returncode != 0:
        raise Failure(f"unable to compile {Path(src).name}{hint}: "
                      + " | ".join(r.stdout.strip().splitlines()[:3]))


# What the probe's wait-like commands report: t0 (ns, CLOCK_MONOTONIC, the
# clock of time.monotonic_ns()), when the first and the last item was first
# seen up, and {item: pid}.
Up = collections.namedtuple("Up", "t0 first last pids")


class Probe:
    """The C probe of one peer: probe_<name>.c, which includes probe.h,
    compiled into --tmp and run as a child in a session of its own that
    gets SIGKILL if this script dies. An item is what the peer finds a
    worker by: a key for keyvisor, a service directory for s6 and runit.
    See probe.h for the shared commands."""

    def __init__(self, name, tmp, cflags=(), libs=(), hint=""):
        self.name = f"probe_{name}"
        self.src = HERE / f"{self.name}.c"
        self.exe = Path(tmp) / self.name
        self.tmp = Path(tmp)
        self.cflags, self.libs, self.hint = cflags, libs, hint
        self.prefix = []  # arguments before the command (probe_kv's)
        self.env = None  # its environment, which a command it runs gets
        self.running = []  # Popen objects not finished yet
        self.lists = 0

    def compile(self):
        compile_c(self.src, self.exe, self.cflags, self.libs, self.hint)

    def items_file(self, items):
        """A new file with ITEMS one a line, for the probe to read."""
        self.lists += 1
        path = self.tmp / f"{self.name}.list{self.lists}"
        path.write_text("".join(f"{i}\n" for i in items))
        return str(path)

    def start(self, *argv):
        # Unbuffered: wait_up() reads "ready" a byte at a time, so that
        # nothing after it is left in a buffer that communicate() skips.
        p = subprocess.Popen([str(self.exe), *self.prefix, *map(str, argv)],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, bufsize=0,
                             start_new_session=True, env=self.env,
                             preexec_fn=pdeathsig(signal.SIGKILL))
        self.running.append(p)
        return p

    def finish(self, p, timeout, ok=(0,)):
        """Wait for probe P; its output lines split into words. Failure if
        it exits with a status not in OK or runs over TIMEOUT s."""
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"{self.name} {p.args[1 + len(self.prefix)]} did "
                          f"not finish in {timeout:.0f} s") from None
        finally:
            if p.poll() is None:  # a time-out, or a signal interrupted us
                p.kill()
                p.wait()
            self.running.remove(p)
        if p.returncode not in ok:
            raise Failure(f"{self.name} {p.args[1 + len(self.prefix)]} "
                          f"exited {p.returncode} (see its message above)")
        return [line.split() for line in out.decode().splitlines()]

    def run(self, *argv, timeout=300, ok=(0,)):
        return self.finish(self.start(*argv), timeout, ok)

    def stop(self):
        """Kill the probes still running."""
        for p in list(self.running):
            if p.poll() is None:
                p.kill()
            p.wait()
            self.running.remove(p)

    @staticmethod
    def up(rows, items, t0=None):
        """The Up in the rows of a wait-like command, or None if it timed
        out; T0 replaces the probe's own."""
        if not rows or rows[0][0] != "up":
            return None
        pids = {items[int(w[1])]: int(w[2]) for w in rows if w[0] == "pid"}
        first, last = int(rows[0][2]), int(rows[0][3])
        return Up(int(rows[0][1]) if t0 is None else t0, first, last, pids)

    def wait_up(self, items, timeout, trigger, must=True):
        """`wait`: the probe polls ITEMS; once it does, TRIGGER() is called
        (t0 is taken just before it). None if not all came up within
        TIMEOUT s and not MUST."""
        p = self.start("wait", self.items_file(items), timeout)
        try:
            if p.stdout.readline() != b"ready\n":
                raise Failure(f"{self.name} wait did not start")
            t0 = time.monotonic_ns()
            trigger()
        except BaseException:
            p.kill()
            self.finish(p, 5, ok=(0, 2, -signal.SIGKILL))
            raise
        up = self.up(self.finish(p, timeout + 30, ok=(0, 2)), items, t0)
        if up is None and must:
            raise Failure(f"not all of {len(items)} up within {timeout} s")
        return up

    def run_up(self, items, timeout, argv, stdin="/dev/null",
               stdout="/dev/null"):
        """`run`: time ARGV from its fork (stdin and stdout from and to the
        files named) until it has exited 0 and all ITEMS are up."""
        rows = self.run("run", self.items_file(items), timeout, stdin, stdout,
                        "--", *argv, timeout=timeout + 60)
        return self.up(rows, items)

    def restarts(self, items, crashes, gap_us, minup_us, timeout_s):
        """`restart`: CRASHES kills round-robin over ITEMS shuffled, each
        until the item shows another live pid. Returns (latencies in us,
        lost, the new pids)."""
        rows = self.run("restart", self.items_file(items), crashes, gap_us,
                        minup_us, timeout_s, SEED,
                        timeout=60 + crashes * (2 * timeout_s
                                                + minup_us / 1e6))
        lat = [int(w[1]) / 1000 for w in rows if w[0] == "restart"]
        new = [int(w[3]) for w in rows if w[0] == "restart"]
        lost = sum(1 for w in rows if w[0] == "lost")
        return lat, lost, new

    def lookups(self, items, n):
        """`lookup`: N lookups of random ITEMS, each checked against the pid
        read first. Returns (mean ns, {item: pid read first})."""
        rows = self.run("lookup", self.items_file(items), n, SEED)
        refs = {items[int(w[1])]: int(w[2]) for w in rows if w[0] == "ref"}
        total, count, bad = (int(x) for x in rows[-1][1:4])
        if rows[-1][0] != "lookup" or count != n or bad:
            raise Failure(f"{self.name} lookup: {bad} of {count} wrong")
        return total / count, refs

    def pids(self, items):
        """`pids`: {item: pid} as the peer shows them now (0: none)."""
        rows = self.run("pids", self.items_file(items))
        return {items[int(w[1])]: int(w[2]) for w in rows if w[0] == "pid"}


# -- the peer scripts -------------------------------------------------------


class Peer:
    """One peer's script: subclasses set the class attributes and define
    run() and stop()."""

    name = ""              # the peer's name in the output
    default_crashes = 20   # --crashes
    tools = ()             # programs that must be on PATH
    install = ""           # how to get them, for the message

    def __init__(self, args):
        self.args = args
        self.tmp = Path(args.tmp).resolve()
        self.worker = Path(args.worker).resolve()
        self.keys = key_names(args.workers)
        self.procs = Tracked()

    def run(self):
        raise NotImplementedError

    def stop(self):
        """Stop everything this script started and return the pids still
        alive afterwards (none, normally); may raise Failure."""
        return self.procs.kill()


def parse_args(cls):
    """The command line of the contract."""
    p = argparse.ArgumentParser(
        description=f"{cls.name}'s side of the keyvisor peer comparison "
        "(see README.md next to this script)")
    p.add_argument("--workers", type=int, default=1000,
                   help="keyed workers (1000)")
    p.add_argument("--crashes", type=int, default=cls.default_crashes,
                   help=f"crashes timed ({cls.default_crashes})")
    p.add_argument("--shell-runs", type=int, default=50,
                   help="runs of the shell lookup (50)")
    p.add_argument("--lookups", type=int, default=100000,
                   help="lookups from a program (100000)")
    p.add_argument("--worker", help="the worker executable (default: "
                   "BUILD/tests/bench/bench-worker)")
    p.add_argument("--tmp", required=True,
                   help="an empty private directory for everything")
    p.add_argument("--build", default=str(SRC / "build"),
                   help="keyvisor's build directory (%(default)s)")
    a = p.parse_args()
    if a.worker is None:
        a.worker = str(Path(a.build) / "tests" / "bench" / "bench-worker")
    for name in ("workers", "crashes", "shell_runs", "lookups"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not os.access(a.worker, os.X_OK):
        p.error(f"{a.worker}: not an executable (ninja -C {a.build}?)")
    if not Path(a.tmp).is_dir():
        p.error(f"--tmp {a.tmp}: not a directory")
    return a


def main(cls):
    """The whole of a peer script: parse the command line, run CLS, stop it
    whatever happened (also on SIGINT, SIGTERM, SIGHUP, during which no
    further signal interrupts the stop), and return the exit status. The
    last stderr line of a failed run says why."""
    global _peer
    _peer = cls.name
    args = parse_args(cls)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    peer, rc, why = None, 0, None
    try:
        missing = [t for t in cls.tools if shutil.which(t) is None]
        if missing:
            raise Failure(f"{', '.join(missing)} not found ({cls.install})")
        peer = cls(args)
        peer.run()
    except Interrupted as e:
        rc, why = 128 + e.signum, f"stopped by {e}"
    except Failure as e:
        rc, why = 1, str(e)
    except Exception as e:  # noqa: BLE001 (reported as one line)
        where = traceback.extract_tb(e.__traceback__)[-1]
        rc, why = 1, (f"{type(e).__name__}: {e} (at "
                      f"{Path(where.filename).name}:{where.lineno})")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if peer is not None:
            try:
                left = peer.stop()
            except Exception as e:  # noqa: BLE001
                left, rc = [], rc or 1
                why = why or f"stop: {e}"
            if left:
                rc = rc or 1
                why = why or (f"{len(left)} processes left after the stop: "
                              f"{left[:10]}")
    if why:
        log(why)
    return rc


# -- s6 and runit -----------------------------------------------------------


class ScanDirPeer(Peer):
    """A daemontools-style tree, as s6 and runit have: a scanner process
    (s6-svscan, runsvdir) watches a directory of service directories and
    runs one supervisor process (s6-supervise, runsv) per service, which
    runs ./run and publishes its pid in SERVICEDIR/supervise/status. The
    probe reads that record."""

    scanner = ""         # the scanner program
    supervisor = ""      # the per-service supervisor program
    scan_name = "scan"   # the scan directory's name under --tmp/NAME
    probe_libs = ()      # what the probe links with
    CRASH_GAP_US = 2000  # at least 2 ms between two kills
    MIN_UP_US = 1_200_000  # kill a worker only after 1.2 s up (> 1 s)
    RESTART_TIMEOUT_S = 10

    def __init__(self, args):
        super().__init__(args)
        self.base = self.tmp / self.name
        self.scan = self.base / self.scan_name
        self.stage = self.base / "stage"  # service dirs are made here
        self.trash = self.base / "trash"  # and moved here to be removed
        for d in (self.scan, self.stage, self.trash):
            d.mkdir(parents=True)
        self.logpath = self.base / f"{self.scanner}.log"
        self.logf = open(self.logpath, "wb")
        self.root = None  # the scanner's Popen
        self.up_since = None  # time.monotonic() when all N were up
        self.probe = Probe(self.name, self.tmp, libs=self.probe_libs,
                           hint=f" ({self.install})")

    def paths(self, names):
        return [str(self.scan / n) for n in names]

    def make_service(self, name, run):
        """A service directory NAME in the staging dir, its `run` a symlink
        to RUN; returns its path."""
        d = self.stage / name
        d.mkdir()
        os.symlink(run, d / "run")
        return d

    def start_root(self, argv, deathsig):
        """Start the scanner, in a session of its own, its stdout
        /dev/null and its stderr (which its children inherit) to the log;
        DEATHSIG takes its tree down if this script dies."""
        log(f"starting {' '.join(map(str, argv))}")
        self.root = subprocess.Popen(
            list(map(str, argv)), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self.logf,
            start_new_session=True, preexec_fn=pdeathsig(deathsig))
        if not self.procs.add(self.root.pid, "scanner") \
                or self.root.poll() is not None:
            raise Failure(f"{self.scanner} exited at once; see "
                          f"{self.logpath}")

    def tree(self):
        """{service name: (supervisor pid, worker pid or None)} of the
        scanner's supervisor children; every pid seen is tracked."""
        procs = all_procs()
        kids = collections.defaultdict(list)
        for pid, st in procs.items():
            if st.state not in "ZX":
                kids[st.ppid].append(pid)
        out = {}
        for pid in kids[self.root.pid]:
            argv = cmdline(pid)
            if len(argv) < 2 or Path(argv[0]).name != self.supervisor:
                continue
            self.procs.add(pid, "supervisor")
            workers = kids[pid]
            for w in workers:
                self.procs.add(w)
            out[Path(argv[1]).name] = (pid, workers[0] if len(workers) == 1
                                       else None)
        return out

    def check_tree(self, names, what):
        """Every NAME has a supervisor child of the scanner whose one child
        is the worker binary; returns {name: worker pid}. A child that has
        not exec'd the worker yet (a `run` that execs it) gets 2 s."""
        end = time.monotonic() + 2
        while True:
            t = self.tree()
            pids, wrong = {}, []
            for name in names:
                sup, w = t.get(name, (None, None))
                if w is None:
                    raise Failure(f"{what}: {name} has no {self.supervisor} "
                                  f"with one live worker child "
                                  f"({self.supervisor} {sup}, children "
                                  f"{children_of(sup) if sup else None})")
                pids[name] = w
                if exe(w) != str(self.worker):
                    wrong.append(f"{name}'s child {w} runs {exe(w)}")
            if not wrong:
                return pids
            if time.monotonic() > end:
                raise Failure(f"{what}: {wrong[0]}, not the worker")
            time.sleep(0.01)

    def stop_root(self):
        """Ask the scanner to take its tree down; the subclass's way."""
        raise NotImplementedError

    def stop_tree(self):
        """The scanner's own way down (stop_root), then every process seen
        that is still there: TERM, then KILL, by pid; last, whatever is
        left in the scanner's process group. Returns the pids still alive
        (none, normally)."""
        if self.root is None:
            return []
        if self.root.poll() is None:
            try:
                self.tree()  # track every pid of the tree as it is now
            except OSError:
                pass
            log(f"stopping {self.scanner} ({len(self.procs.live())} "
                "processes)")
            self.stop_root()
            wait_or_kill(self.root, self.scanner)
        _, left = self.procs.sweep(30, self.scanner)
        if kill_group(self.root.pid):
            log(f"processes left in {self.scanner}'s group: killed")
        reap_orphans()
        if not left:
            log(f"teardown: all {len(self.procs.procs)} processes seen are "
                "gone")
        self.root = None
        return left

    def stop(self):
        self.probe.stop()
        left = self.stop_tree()
        self.logf.close()
        return left

    def bring_up(self, trigger, timeout):
        """Time TRIGGER until every key's service shows a live pid through
        the probe; checks the tree. Returns the Up."""
        up = self.probe.wait_up(self.paths(self.keys), timeout, trigger)
        self.up_since = time.monotonic()
        self.check_tree(self.keys, "bring-up")
        return up

    def lookup_program(self, how):
        """lookup_program_us: the probe's lookups over the N services, their
        pids checked against /proc. HOW: what one lookup is, for the note."""
        n = self.args.lookups
        log(f"{n} lookups: {how}")
        pids = self.check_tree(self.keys, "lookup")
        ns, refs = self.probe.lookups(self.paths(self.keys), n)
        for name, pid in pids.items():
            read = refs[str(self.scan / name)]
            if read != pid:
                raise Failure(f"the probe read pid {read} for {name}, its "
                              f"worker is {pid}")
        emit("lookup_program_us", ns / 1000,
             f"mean of {n} lookups of random keys from one process, C -O2 "
             f"(probe_{self.name}.c): {how}; each result checked against "
             "the pid read first, and those against /proc (the worker child "
             f"of that key's {self.supervisor})")
        log(f"program lookup: {ns:.0f} ns")

    def lookup_shell(self, argv_of, parse, what):
        """lookup_shell_us: time_shell_lookups over the N services; WHAT
        the command does, for the note."""
        runs = self.args.shell_runs
        pids = self.check_tree(self.keys, "shell lookup")
        times = time_shell_lookups(runs, self.keys, argv_of, pids, parse)
        emit("lookup_shell_us", median(times),
             f"median of {runs} runs over random keys, each timed around "
             f"the whole process (peerlib.time_command): {what}; its output "
             "checked against the worker's pid in /proc")

    def memory(self):
        """mem_kib: the scanner and its N supervisors."""
        sups = [s for s, _ in self.tree().values()]
        if len(sups) != len(self.keys):
            raise Failure(f"memory: {len(sups)} {self.supervisor}, expected "
                          f"{len(self.keys)}")
        emit_memory([self.root.pid] + sups,
                    f"sum of Pss (smaps_rollup) of {self.scanner} and its "
                    f"{len(sups)} {self.supervisor} processes (one per "
                    f"service) with {len(self.keys)} workers running; "
                    "workers not counted",
                    f"{self.scanner} + one {self.supervisor} per worker")

    def crashes(self, names, what, count=None):
        """The probe's restart loop over NAMES (each up for MIN_UP_US
        first), COUNT crashes (default --crashes); returns (latencies us,
        lost)."""
        c = count if count is not None else self.args.crashes
        log(f"restarts{what}: {c} SIGKILLs, round-robin over {len(names)} "
            "shuffled services")
        lat, lost, new = self.probe.restarts(
            self.paths(names), c, self.CRASH_GAP_US, self.MIN_UP_US,
            self.RESTART_TIMEOUT_S)
        for p in new:
            self.procs.add(p)
        self.check_tree(names, f"after the restarts{what}")
        return lat, lost

    def restart_note(self, lat, lost, how):
        return (f"SIGKILL of the worker's pid until {how} and alive "
                f"(kill(pid,0)); C spin with sched_yield; {len(lat)} crashes "
                f"round-robin over the {len(self.keys)} shuffled keys, each "
                f"worker up > {self.MIN_UP_US / 1e6:g} s, >= "
                f"{self.CRASH_GAP_US / 1000:g} ms between kills; lost: "
                f"{lost}")

    def wait_until_up_long_enough(self):
        """Sleep until the N have been up for MIN_UP_US."""
        wait = self.up_since + self.MIN_UP_US / 1e6 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
