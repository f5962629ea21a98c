#!/usr/bin/env python3
"""s6's side of the peer comparison (the shared contract for peers.py).

    python3 peer_s6.py --workers N --crashes C --shell-runs R \
        --lookups L --worker PATH --tmp DIR [--build BUILDDIR]

Starts a private s6-svscan on an empty scan directory in DIR, in a session
of its own, and measures the workloads of the contract with N service
directories w0000.. (each `run` a symlink to the worker binary: s6-supervise
execs the worker itself, no shell). The loops that read s6's status records
are C (probe_s6.c, compiled into DIR with cc -O2 against libs6); a program's
key -> pid lookup is s6_svstatus_read(SCANDIR/KEY) -> st.pid.

What s6 does that matters here (s6's documentation, the s6-supervise
source, and what strace shows of 2.11.3.2):
  * s6-svscan only scans when told (`s6-svscanctl -a`, SIGALRM) unless given
    -t; we pass -t 0 (the default) so that nothing starts before we ask.
  * s6-svscan -c MAX caps the number of s6-supervise processes (2.11.3.2:
    services and loggers alike); we pass room for all of ours.
  * s6-supervise 2.11.3.2 respawns ./run 1 s after it died, unless the
    service notified readiness (notification-fd), in which case it respawns
    at readiness + 1 s, i.e. at once if it was ready for more than 1 s (see
    set_down_and_ready() in s6-supervise.c; strace shows the 1 s ppoll).
    The worker cannot notify readiness, so restarts of the N workers take
    ~1 s; restart_ready() measures the same crashes on a few extra services
    whose `run` is a tiny C wrapper that notifies, then execs the worker.
    Each worker is killed only after it has been up > 1 s.
  * While ./finish runs (spawned after every death, even when there is no
    ./finish file: that child fails to exec), supervise/status holds that
    child's pid with flagfinishing set: the probe counts it as down.
  * s6-svscanctl -t (SIGTERM) makes s6-svscan tell every s6-supervise to
    bring its service down and exit, wait for the whole tree, then exit.

Prints one JSON object per line on stdout; progress goes to stderr.
"""

import argparse
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
import time
from pathlib import Path

PEER = "s6"
HERE = Path(__file__).resolve().parent
SEED = 42
CRASH_GAP_US = 2000        # at least 2 ms between two kills
MIN_UP_US = 1_200_000      # a worker is killed only after 1.2 s up (> 1 s)
RESTART_TIMEOUT_S = 10
ADD_RUNS = 5


# The `run` of the readiness-notification services (restart_ready): tell
# s6-supervise the service is ready (a newline on notification-fd 3), then
# become the worker. WORKER is given with -D at compile time.
NOTIFY_EXEC_C = r"""
#include <unistd.h>
int main(int argc, char **argv)
{
	(void)argc;
	if (write(3, "\n", 1) != 1)
		return 111;
	close(3);
	execv(WORKER, argv);
	return 111;
}
"""


def log(msg):
    """Progress, on stderr."""
    print(f"peer_s6: {msg}", file=sys.stderr, flush=True)


def emit(metric, value, note=""):
    """One result line of the contract, on stdout."""
    print(json.dumps({"peer": PEER, "metric": metric, "value": value,
                      "note": note}), flush=True)


class Failure(Exception):
    """A reason this run cannot go on; main() prints it as one line."""


def key_names(n):
    """w0000 .. w{n-1}: zero-padded to 4 digits, more when n > 10000."""
    width = max(4, len(str(n - 1)))
    return [f"w{i:0{width}d}" for i in range(n)]


def nearest_rank(sorted_values, q):
    """The q-quantile of sorted_values by nearest rank."""
    if not sorted_values:
        return None
    return sorted_values[max(1, math.ceil(q * len(sorted_values))) - 1]


def proc_stat(pid):
    """(state, ppid, pgrp, sid, starttime) of PID from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    return (fields[0].decode(), int(fields[1]), int(fields[2]),
            int(fields[3]), int(fields[19]))


def cmdline(pid):
    """argv of PID as a list of str ([] if gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace")
                    for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def all_procs():
    """{pid: (state, ppid, pgrp, sid, starttime)} of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def same_process(pid, start):
    """True if PID is still the (non-zombie) process that started at START."""
    st = proc_stat(pid)
    return st is not None and st[4] == start and st[0] not in ("Z", "X")


def smaps_rollup(pid):
    """{field: KiB} from /proc/PID/smaps_rollup (Rss, Pss, ...)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def die_with_parent():
    """In s6-svscan before exec: SIGTERM it if this script dies (even of
    SIGKILL); SIGTERM makes s6-svscan take its whole tree down."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def probe_dies_with_parent():
    """In a probe before exec: SIGKILL it if this script dies."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def pkg_version(pkg):
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True, timeout=10)
        return r.stdout.strip() if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


class S6:
    """A private s6-svscan tree, its service directories, and the probe."""

    def __init__(self, args):
        self.args = args
        self.tmp = Path(args.tmp).resolve()
        self.base = self.tmp / "s6"
        self.scan = self.base / "scan"
        self.stage = self.base / "stage"
        self.trash = self.base / "trash"
        self.worker = Path(args.worker).resolve()
        self.keys = key_names(args.workers)
        self.svscan = None          # Popen of s6-svscan
        self.svscan_start = None
        self.cmax = None
        self.known = {}             # pid -> start time of all we have seen
        self.probes = []            # live probe Popens
        self.probe = self.tmp / "probe_s6"
        self.up_since = None        # monotonic time all N were up
        self.logf = None

    # ---- processes -------------------------------------------------------

    def tree(self):
        """{name: (supervise_pid, worker_pid or None)} of the s6-supervise
        children of our s6-svscan (name: the service directory it runs on),
        and records every pid seen for the teardown."""
        procs = all_procs()
        sv = self.svscan.pid
        out = {}
        kids = {}
        for pid, st in procs.items():
            kids.setdefault(st[1], []).append(pid)
        for pid in kids.get(sv, []):
            argv = cmdline(pid)
            if len(argv) < 2 or not argv[0].endswith("s6-supervise"):
                continue
            self.known[pid] = procs[pid][4]
            workers = [w for w in kids.get(pid, [])
                       if procs[w][0] not in ("Z", "X")]
            for w in workers:
                self.known[w] = procs[w][4]
            out[argv[1]] = (pid, workers[0] if len(workers) == 1 else None)
        return out

    def check_tree(self, names, what):
        """Every NAME has an s6-supervise child of s6-svscan whose one child
        is a live worker (the worker binary); returns {name: worker_pid}."""
        t = self.tree()
        pids = {}
        for name in names:
            if name not in t or t[name][1] is None:
                kids = ([c for c, st in all_procs().items()
                         if st[1] == t[name][0]] if name in t else None)
                raise Failure(f"{what}: {name} has no s6-supervise with one "
                              f"live worker child (s6-supervise "
                              f"{t.get(name, (None,))[0]}, children {kids})")
            w = t[name][1]
            try:
                exe = os.readlink(f"/proc/{w}/exe")
            except OSError:
                exe = "?"
            if Path(exe) != self.worker:
                raise Failure(f"{what}: {name}'s child {w} runs {exe}, not "
                              f"the worker")
            pids[name] = w
        return pids

    # ---- the probe -------------------------------------------------------

    def compile_probe(self):
        src = HERE / "probe_s6.c"
        cmd = ["cc", "-Wall", "-Wextra", "-Werror", "-O2", "-o",
               str(self.probe), str(src), "-ls6", "-lskarnet"]
        r = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise Failure("cannot compile probe_s6.c (needs libs6-dev and "
                          "skalibs-dev): " + " | ".join(
                              r.stdout.strip().splitlines()[:3]))

    def pathfile(self, names, tag):
        f = self.base / f"paths-{tag}"
        f.write_text("".join(f"{self.scan / n}\n" for n in names))
        return f

    def start_probe(self, *argv):
        p = subprocess.Popen([str(self.probe), *argv], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True,
                             start_new_session=True,
                             preexec_fn=probe_dies_with_parent)
        self.probes.append(p)
        return p

    def finish_probe(self, p, timeout):
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"probe {p.args[1]} did not finish in {timeout} s")
        finally:
            if p.poll() is None:    # timeout, or a signal interrupted us
                p.kill()
                p.wait()
            self.probes.remove(p)
        if p.returncode != 0:
            raise Failure(f"probe {p.args[1]} exited {p.returncode}: "
                          f"{out.strip()[-200:]}")
        return [line.split() for line in out.splitlines()]

    def timed_wait(self, names, tag, trigger, timeout):
        """Start `probe wait` on NAMES, call TRIGGER once it polls; returns
        (t0, first_ns, last_ns), t0 taken just before TRIGGER."""
        p = self.start_probe("wait", str(self.pathfile(names, tag)),
                             str(timeout))
        if p.stdout.readline().strip() != "ready":
            self.finish_probe(p, 5)
            raise Failure("probe wait did not start")
        t0 = time.monotonic_ns()
        trigger()
        rows = self.finish_probe(p, timeout + 5)
        if not rows or rows[-1][0] != "up":
            raise Failure(f"{tag}: not all up in {timeout} s: {rows}")
        return t0, int(rows[-1][1]), int(rows[-1][2])

    def svscanctl(self, *opts):
        r = subprocess.run(["s6-svscanctl", *opts, str(self.scan)],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        if r.returncode != 0:
            raise Failure(f"s6-svscanctl {' '.join(opts)}: exit "
                          f"{r.returncode}: {r.stderr.strip()}")

    # ---- start and stop --------------------------------------------------

    def start(self):
        for d in (self.scan, self.stage, self.trash):
            d.mkdir(parents=True)
        self.compile_probe()
        self.logf = open(self.base / "s6-svscan.log", "wb")
        # N workers, `extra`, and the readiness services of restart_ready.
        cmax = self.cmax = (len(self.keys) + 16 +
                            min(self.args.crashes, len(self.keys)))
        log(f"starting s6-svscan -c {cmax} -t 0 {self.scan}")
        self.svscan = subprocess.Popen(
            ["s6-svscan", "-c", str(cmax), "-t", "0", str(self.scan)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self.logf, start_new_session=True,
            preexec_fn=die_with_parent)
        st = None
        while st is None:
            st = proc_stat(self.svscan.pid)
        self.svscan_start = st[4]
        self.known[self.svscan.pid] = st[4]
        # Ready when its control fifo has a reader: s6-svscanctl succeeds.
        end = time.monotonic() + 10
        while True:
            if self.svscan.poll() is not None:
                raise Failure(f"s6-svscan exited {self.svscan.returncode}; "
                              f"see {self.base / 's6-svscan.log'}")
            r = subprocess.run(["s6-svscanctl", "-z", str(self.scan)],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                break
            if time.monotonic() > end:
                raise Failure("s6-svscan did not open its control fifo")
            time.sleep(0.01)

    def stop(self):
        """Take the tree down: s6-svscanctl -t, wait for s6-svscan; then
        anything we saw that is still there gets TERM, then KILL, by pid."""
        for p in list(self.probes):
            if p.poll() is None:
                p.kill()
            p.wait()
            self.probes.remove(p)
        if self.svscan is None:
            return
        if self.svscan.poll() is None:
            try:
                self.tree()     # record every pid of the tree as it is now
            except Exception:  # noqa: BLE001 (best effort)
                pass
            n = sum(1 for p, s in self.known.items() if same_process(p, s))
            log(f"stopping: s6-svscanctl -t ({n} processes)")
            try:
                self.svscanctl("-t")
            except (Failure, OSError, subprocess.SubprocessError):
                os.kill(self.svscan.pid, signal.SIGTERM)
            try:
                self.svscan.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log("s6-svscan still there after 60 s: SIGKILL")
                self.svscan.kill()
                self.svscan.wait()
        end = time.monotonic() + 20
        while time.monotonic() < end:
            left = [p for p, s in self.known.items() if same_process(p, s)]
            if not left:
                break
            time.sleep(0.05)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = [p for p, s in self.known.items() if same_process(p, s)]
            if not left:
                break
            log(f"{len(left)} processes left: {signal.Signals(sig).name}")
            for p in left:
                try:
                    os.kill(p, sig)
                except OSError:
                    pass
            time.sleep(2)
        # Last resort: what is left of s6-svscan's session (its s6-supervise
        # children share it; the workers have sessions of their own).
        sid = self.svscan.pid
        rest = [p for p, st in all_procs().items()
                if st[3] == sid and st[2] == sid and st[0] not in ("Z", "X")]
        if rest:
            log(f"{len(rest)} processes left in s6-svscan's session: killpg")
            try:
                os.killpg(sid, signal.SIGKILL)
            except OSError:
                pass
        left = [p for p, s in self.known.items() if same_process(p, s)]
        if left:
            log(f"WARNING: still alive after the teardown: {left[:10]}")
        else:
            log(f"teardown: all {len(self.known)} processes seen are gone")
        self.svscan = None
        if self.logf:
            self.logf.close()

    # ---- workloads -------------------------------------------------------

    def make_service(self, name):
        d = self.stage / name
        d.mkdir()
        os.symlink(self.worker, d / "run")
        return d

    def bringup(self):
        n = len(self.keys)
        log(f"bring-up: {n} service dirs staged, moved into the scan dir")
        for k in self.keys:
            self.make_service(k)
        for k in self.keys:
            os.rename(self.stage / k, self.scan / k)
        if self.tree():
            raise Failure("s6-svscan started services before being told")
        t0, first, last = self.timed_wait(
            self.keys, "all", lambda: self.svscanctl("-a"),
            60 + n // 20)
        self.up_since = time.monotonic()
        ms = (last - t0) / 1e6
        self.check_tree(self.keys, "bring-up")
        emit("bringup_ms", round(ms, 1),
             f"N={n} service dirs (each `run` a symlink to the worker, no "
             "shell; made in a staging dir and moved into the scan dir "
             "untimed: s6-svscan -t 0 does not look by itself), timed from "
             "just before `s6-svscanctl -a SCANDIR` until probe_s6 (C) saw "
             "every supervise/status show a live pid through "
             "s6_svstatus_read; first service up after "
             f"{(first - t0) / 1e6:.1f} ms. `s6-svscan -c {self.cmax} -t 0 "
             "SCANDIR` in its own session, stdout /dev/null, stderr (which "
             "the workers inherit; they write nothing) to a log in --tmp")
        log(f"bring-up: {ms:.0f} ms")

    def lookup_program(self):
        n = self.args.lookups
        log(f"{n} lookups through s6_svstatus_read")
        pids = self.check_tree(self.keys, "lookup")
        rows = self.finish_probe(self.start_probe(
            "lookup", str(self.pathfile(self.keys, "all")), str(n),
            str(SEED)), 120)
        for r in rows:
            if r[0] == "ref" and pids[self.keys[int(r[1])]] != int(r[2]):
                raise Failure(f"s6_svstatus_read({self.keys[int(r[1])]}) "
                              f"gave {r[2]}, its worker is "
                              f"{pids[self.keys[int(r[1])]]}")
        total, count, bad = (int(x) for x in rows[-1][1:4])
        if rows[-1][0] != "lookup" or bad:
            raise Failure(f"lookup: {bad} wrong pids")
        ns = total / count
        emit("lookup_program_us", round(ns / 1000, 4),
             f"mean of {count} s6_svstatus_read(SCANDIR/KEY) calls (libs6, "
             "C, -O2) on random keys from one process: open, read and close "
             "of supervise/status (35 bytes) each; every result checked "
             "against the pid read first, and those against /proc (the "
             "worker child of that key's s6-supervise)")
        log(f"program lookup: {ns:.0f} ns")

    def lookup_shell(self):
        runs = self.args.shell_runs
        log(f"{runs} runs of s6-svstat -p")
        pids = self.check_tree(self.keys, "shell lookup")
        rnd = random.Random(SEED)
        times, base = [], []
        for _ in range(runs):
            key = rnd.choice(self.keys)
            cmd = ["s6-svstat", "-p", str(self.scan / key)]
            t0 = time.perf_counter_ns()
            r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True,
                               timeout=10)
            t1 = time.perf_counter_ns()
            if r.returncode != 0 or r.stdout.strip() != str(pids[key]):
                raise Failure(f"s6-svstat -p {key} printed "
                              f"{r.stdout.strip()!r} (exit {r.returncode}), "
                              f"expected {pids[key]}")
            times.append((t1 - t0) / 1000)
            t0 = time.perf_counter_ns()
            subprocess.run(["/bin/true"], stdout=subprocess.PIPE)
            base.append((time.perf_counter_ns() - t0) / 1000)
        med = statistics.median(times)
        emit("lookup_shell_us", round(med, 1),
             f"median of {runs} runs of `s6-svstat -p SCANDIR/KEY` over "
             "random keys, each timed around Python's subprocess.run (fork, "
             "exec, read supervise/status, print, exit, wait); output "
             "checked against the worker's pid in /proc. /bin/true timed "
             f"the same way: {statistics.median(base):.0f} us")
        log(f"shell lookup: {med:.0f} us")

    def crash_loop(self, order, tag):
        """probe restart over ORDER; returns (sorted latencies in us, lost)."""
        c = self.args.crashes
        rows = self.finish_probe(self.start_probe(
            "restart", str(self.pathfile(order, tag)), str(c),
            str(CRASH_GAP_US), str(MIN_UP_US), str(RESTART_TIMEOUT_S)),
            c * (RESTART_TIMEOUT_S + MIN_UP_US / 1e6) + 30)
        lat = sorted(int(r[1]) / 1000 for r in rows if r[0] == "restart")
        lost = sum(1 for r in rows if r[0] == "lost")
        return lat, lost

    def restart(self):
        """Workload 2 on the N workers (run = the worker itself)."""
        c = self.args.crashes
        order = list(self.keys)
        random.Random(SEED).shuffle(order)
        wait = self.up_since + MIN_UP_US / 1e6 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        log(f"restart: {c} SIGKILLs, round-robin over {len(order)} "
            "shuffled keys (each takes >= 1 s: s6-supervise's throttle)")
        lat, lost = self.crash_loop(order, "order")
        self.check_tree(self.keys, "after the restarts")
        if not lat:
            raise Failure(f"restart: no restart seen ({lost} lost)")
        log(f"restart: p50 {nearest_rank(lat, 0.5):.0f} us, max "
            f"{lat[-1]:.0f} us, lost {lost}")
        return lat, lost

    def restart_ready(self):
        """The same crashes on services that notify readiness, the one way
        s6-supervise 2.11 restarts without its 1 s pause: a tiny static C
        run (no shell) writes the readiness newline on fd 3
        (notification-fd) and execs the worker. On their own service dirs,
        after the other workloads, so that nothing else sees them."""
        c = self.args.crashes
        m = min(c, len(self.keys))
        src = self.base / "notify-exec.c"
        exe = self.base / "notify-exec"
        src.write_text(NOTIFY_EXEC_C)
        base = ["cc", "-Wall", "-Wextra", "-Werror", "-O2",
                f'-DWORKER="{self.worker}"', "-o", str(exe), str(src)]
        static = subprocess.run(base[:1] + ["-static"] + base[1:],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode == 0
        if not static:
            r = subprocess.run(base, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                raise Failure("cannot compile notify-exec: " + r.stdout)
        names = [f"ready{i:04d}" for i in range(m)]
        for name in names:
            d = self.stage / name
            d.mkdir()
            os.symlink(exe, d / "run")
            (d / "notification-fd").write_text("3\n")
            os.rename(d, self.scan / name)
        self.timed_wait(names, "ready", lambda: self.svscanctl("-a"), 60)
        self.check_tree(names, "readiness services")
        time.sleep(MIN_UP_US / 1e6)
        order = list(names)
        random.Random(SEED).shuffle(order)
        log(f"restart with readiness notification: {c} SIGKILLs over {m} "
            "services")
        lat, lost = self.crash_loop(order, "ready-order")
        self.check_tree(names, "after the readiness restarts")
        if not lat:
            raise Failure(f"restart (ready): no restart seen ({lost} lost)")
        log(f"restart (ready): p50 {nearest_rank(lat, 0.5):.0f} us, max "
            f"{lat[-1]:.0f} us, lost {lost}")
        return lat, lost, static

    def emit_restart(self, main, ready):
        lat, lost = main
        n = len(self.keys)
        note = (f"SIGKILL of the worker's pid until s6_svstatus_read shows a "
                "new pid that is up (flagfinishing clear) and alive "
                f"(kill(pid,0)); C spin with sched_yield; {len(lat)} "
                f"crashes round-robin over {n} shuffled keys, each worker up "
                f"> {MIN_UP_US / 1e6:g} s, >= {CRASH_GAP_US / 1000:g} ms "
                f"between kills; lost: {lost}. `run` is the worker itself, "
                "which cannot notify readiness, and s6-supervise 2.11.3.2 "
                "then always waits 1 s after a death before it respawns "
                "(set_down_and_ready(): deadline = now + 1 s unless the "
                "service notified readiness, then readiness + 1 s; nothing "
                "else turns it off), so this is ~1 s by design.")
        if isinstance(ready, tuple):
            rl, rlost, static = ready
            note += (f" With readiness notification (notification-fd 3, "
                     f"`run` a {'static ' if static else ''}C wrapper that "
                     "writes the newline and execs the worker, no shell; "
                     f"{len(rl)} crashes over {min(self.args.crashes, n)} "
                     f"such services, lost {rlost}): p50 "
                     f"{nearest_rank(rl, 0.5):.0f} us, p99 "
                     f"{nearest_rank(rl, 0.99):.0f} us, max {rl[-1]:.0f} us.")
        else:
            note += f" (The readiness-notification run failed: {ready}.)"
        emit("restart_p50_us", round(nearest_rank(lat, 0.50), 1), note)
        emit("restart_p99_us", round(nearest_rank(lat, 0.99), 1),
             "nearest rank; see restart_p50_us")
        emit("restart_max_us", round(lat[-1], 1), "see restart_p50_us")
        emit("restart_n", len(lat), f"lost: {lost}")

    def memory(self):
        t = self.tree()
        sups = [s for s, _ in t.values()]
        if len(sups) != len(self.keys):
            raise Failure(f"memory: {len(sups)} s6-supervise, expected "
                          f"{len(self.keys)}")
        main = smaps_rollup(self.svscan.pid)
        total = main["Pss"]
        for s in sups:
            total += smaps_rollup(s)["Pss"]
        emit("mem_kib", total,
             f"sum of Pss (smaps_rollup) of s6-svscan and its "
             f"{len(sups)} s6-supervise processes (one per service) with "
             f"{len(self.keys)} workers running; workers not counted")
        emit("mem_procs", 1 + len(sups), "s6-svscan + one s6-supervise "
             "per worker")
        emit("rss_main_kib", main["Rss"], "Rss of s6-svscan")
        log(f"memory: {total} KiB Pss in {1 + len(sups)} processes")

    def add_once(self, k):
        name = "extra"
        self.make_service(name)
        os.rename(self.stage / name, self.scan / name)
        t0, _, last = self.timed_wait([name], f"extra{k}",
                                      lambda: self.svscanctl("-a"), 30)
        ms = (last - t0) / 1e6
        self.check_tree([name], "add")
        # Remove it: down, out of the scan dir, s6-svscanctl -an, gone.
        sup = self.tree()[name][0]
        r = subprocess.run(["s6-svc", "-wd", "-T", "10000", "-d",
                            str(self.scan / name)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, timeout=20)
        if r.returncode != 0:
            raise Failure(f"s6-svc -wd -d extra: {r.stderr.strip()}")
        gone = self.trash / f"extra{k}"
        os.rename(self.scan / name, gone)
        self.svscanctl("-an")
        end = time.monotonic() + 10
        while same_process(sup, self.known[sup]):
            if time.monotonic() > end:
                raise Failure("removed extra's s6-supervise did not exit")
            time.sleep(0.01)
        shutil.rmtree(gone)
        return ms

    def add_worker(self):
        log(f"add: {ADD_RUNS} times")
        runs = [self.add_once(k) for k in range(ADD_RUNS)]
        med = statistics.median(runs)
        emit("add_worker_ms", round(med, 2),
             f"median of {ADD_RUNS}: service dir `extra` made and moved "
             "into the scan dir untimed, then timed from just before "
             "`s6-svscanctl -a SCANDIR` until s6_svstatus_read shows a live "
             f"pid; N={len(self.keys)} running. Removed between runs "
             "(s6-svc -wd -d, moved out, s6-svscanctl -an, its s6-supervise "
             "gone). Runs: " + ", ".join(f"{x:.1f}" for x in runs))
        log(f"add: {med:.1f} ms")

    def run(self):
        self.start()
        self.bringup()
        self.lookup_program()
        self.lookup_shell()
        self.memory()
        self.add_worker()
        main = self.restart()
        try:
            ready = self.restart_ready()
        except (Failure, OSError) as e:
            log(f"readiness restart run failed: {e}")
            ready = str(e)
        self.emit_restart(main, ready)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--crashes", type=int, default=20)
    p.add_argument("--shell-runs", type=int, default=50)
    p.add_argument("--lookups", type=int, default=100000)
    p.add_argument("--worker", required=True)
    p.add_argument("--tmp", required=True)
    p.add_argument("--build", help="keyvisor's build dir (unused here)")
    a = p.parse_args()
    if a.workers < 1 or a.crashes < 1 or a.shell_runs < 1 or a.lookups < 1:
        print("peer_s6: counts must be >= 1", file=sys.stderr)
        return 2
    for prog in ("s6-svscan", "s6-supervise", "s6-svscanctl", "s6-svstat",
                 "s6-svc", "cc"):
        if shutil.which(prog) is None:
            print(f"peer_s6: {prog} not found (apt-get install s6 libs6-dev "
                  "skalibs-dev)", file=sys.stderr)
            return 1
    if not os.access(a.worker, os.X_OK):
        print(f"peer_s6: worker {a.worker} is not executable",
              file=sys.stderr)
        return 1
    if not Path(a.tmp).is_dir():
        print(f"peer_s6: --tmp {a.tmp} is not a directory", file=sys.stderr)
        return 1

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    def on_sigint(_signum, _frame):
        raise KeyboardInterrupt

    # Explicit handlers, also when started with SIGINT ignored (background).
    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    v = pkg_version("s6")
    emit("version", None,
         f"s6 {v or '(not from dpkg)'}, libs6-dev "
         f"{pkg_version('libs6-dev') or '?'}, skalibs "
         f"{pkg_version('skalibs-dev') or pkg_version('libskarnet2.13') or '?'}")
    s6 = S6(a)
    rc = 0
    try:
        s6.run()
    except Failure as e:
        print(f"peer_s6: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("peer_s6: interrupted", file=sys.stderr)
        rc = 130
    except SystemExit as e:
        print(f"peer_s6: stopped by a signal ({e.code})", file=sys.stderr)
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        s6.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
