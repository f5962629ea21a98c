#!/usr/bin/env python3
"""runit's side of the peer comparison (the shared contract for peers.py).

    python3 peer_runit.py --workers N --crashes C --shell-runs R \
        --lookups L --worker PATH --tmp DIR [--build BUILDDIR]

Starts a private `runsvdir -P` on a service directory in DIR, in a session
of its own, and measures the workloads of the contract with N service
directories w0000.. (each `run` a symlink to the worker binary: runsv
execs the worker itself, no shell). runit has no library: a program's
key -> pid lookup reads SERVICEDIR/supervise/status, the 20-byte binary
record runsv keeps (pid in bytes 12..15, little-endian; state in byte 19),
as sv(8) does. The loops that read it are C (probe_runit.c, compiled into
DIR with cc -O2).

What runit does that matters here (runsvdir(8), runsv(8), runit 2.1.2
sources):
  * runsvdir has no command to rescan: it wakes every 5 s (1 s after it
    started services or reaped a runsv; SIGCHLD does not wake it), and if
    its directory's mtime (whole seconds), inode or device changed, it
    scans it and starts a runsv for each new subdirectory; when the mtime
    is the current second it first sleeps 1 s (so as not to miss a second
    change within that second). Debian's build has no inotify. So a new
    service is seen 0-6 s after it appears: bring-up and add include that.
  * A removed subdirectory's slot is freed at runsvdir's next scan, after
    the scan's readdir loop; removal waits 6.5 s so that the next add is
    not counted against the limit below.
  * runsvdir starts at most 1000 services (MAXSERVICES; runsvdir(8): "up
    to a limit of 1000 subdirectories"); more are refused with "too many
    services". N > 1000 cannot run; at N = 1000 `extra` is refused.
  * runsv restarts ./run at once when it exits, unless it ran for less
    than 1 s: then it sleeps 1 s first. Nothing to configure.
  * runsv writes the new pid to supervise/status right after fork(),
    before the child has exec'd ./run.
  * SIGHUP to runsvdir: TERM to every runsv and exit; runsv on TERM acts
    as `sv exit`: TERM + CONT to ./run, wait for it, exit.

Prints one JSON object per line on stdout; progress goes to stderr.
"""

import argparse
import ctypes
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

PEER = "runit"
HERE = Path(__file__).resolve().parent
SEED = 42
CRASH_GAP_US = 2000        # at least 2 ms between two kills
MIN_UP_US = 1_200_000      # a worker is killed only after 1.2 s up (> 1 s)
RESTART_TIMEOUT_S = 10
ADD_RUNS = 3
MAXSERVICES = 1000         # runsvdir.c
SCAN_S = 5                 # runsvdir's rescan period without inotify
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def log(msg):
    """Progress, on stderr."""
    print(f"peer_runit: {msg}", file=sys.stderr, flush=True)


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


def prctl(option, arg):
    return ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)


def die_with_parent():
    """In runsvdir before exec: SIGHUP it if this script dies (even of
    SIGKILL); SIGHUP makes runsvdir TERM every runsv, which stops its
    worker and exits."""
    prctl(PR_SET_PDEATHSIG, signal.SIGHUP)


def probe_dies_with_parent():
    """In a probe before exec: SIGKILL it if this script dies."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def reap_orphans():
    """Reap children we adopted as subreaper (runsv processes orphaned when
    runsvdir exits). Only called when no Popen of ours is running."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def pkg_version(pkg):
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True, timeout=10)
        return r.stdout.strip() if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


class Runit:
    """A private runsvdir tree, its service directories, and the probe."""

    def __init__(self, args):
        self.args = args
        self.tmp = Path(args.tmp).resolve()
        self.base = self.tmp / "runit"
        self.svdir = self.base / "service"
        self.stage = self.base / "stage"
        self.trash = self.base / "trash"
        self.worker = Path(args.worker).resolve()
        self.keys = key_names(args.workers)
        self.runsvdir = None        # Popen of runsvdir
        self.known = {}             # pid -> start time of all we have seen
        self.probes = []            # live probe Popens
        self.probe = self.tmp / "probe_runit"
        self.up_since = None        # monotonic time all N were up
        self.logf = None
        self.logpath = self.base / "runsvdir.log"
        self.retired = []           # workers removed to make room for extra

    # ---- processes -------------------------------------------------------

    def tree(self):
        """{name: (runsv_pid, worker_pid or None)} of the runsv children of
        our runsvdir (name: the service directory it runs on); records
        every pid seen for the teardown."""
        procs = all_procs()
        kids = {}
        for pid, st in procs.items():
            kids.setdefault(st[1], []).append(pid)
        out = {}
        for pid in kids.get(self.runsvdir.pid, []):
            argv = cmdline(pid)
            if len(argv) < 2 or not argv[0].endswith("runsv"):
                continue
            self.known[pid] = procs[pid][4]
            workers = [w for w in kids.get(pid, [])
                       if procs[w][0] not in ("Z", "X")]
            for w in workers:
                self.known[w] = procs[w][4]
            out[argv[1]] = (pid, workers[0] if len(workers) == 1 else None)
        return out

    def check_tree(self, names, what):
        """Every NAME has a runsv child of runsvdir whose one child is a
        live worker (the worker binary); returns {name: worker_pid}."""
        t = self.tree()
        pids = {}
        for name in names:
            if name not in t or t[name][1] is None:
                kids = ([c for c, st in all_procs().items()
                         if st[1] == t[name][0]] if name in t else None)
                raise Failure(f"{what}: {name} has no runsv with one live "
                              f"worker child (runsv "
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
        src = HERE / "probe_runit.c"
        cmd = ["cc", "-Wall", "-Wextra", "-Werror", "-O2", "-o",
               str(self.probe), str(src)]
        r = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise Failure("cannot compile probe_runit.c: " + " | ".join(
                r.stdout.strip().splitlines()[:3]))

    def pathfile(self, names, tag):
        f = self.base / f"paths-{tag}"
        f.write_text("".join(f"{self.svdir / n}\n" for n in names))
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
        rows = [line.split() for line in out.splitlines()]
        if p.returncode == 2 and rows and rows[-1][0] == "timeout":
            return rows
        if p.returncode != 0:
            raise Failure(f"probe {p.args[1]} exited {p.returncode}: "
                          f"{out.strip()[-200:]}")
        return rows

    def timed_wait(self, names, tag, trigger, timeout, must=True):
        """Start `probe wait` on NAMES, call TRIGGER once it polls; returns
        (t0, first_ns, last_ns), t0 taken just before TRIGGER; None if not
        all came up in TIMEOUT s and MUST is false."""
        p = self.start_probe("wait", str(self.pathfile(names, tag)),
                             str(timeout))
        if p.stdout.readline().strip() != "ready":
            self.finish_probe(p, 5)
            raise Failure("probe wait did not start")
        t0 = time.monotonic_ns()
        trigger()
        rows = self.finish_probe(p, timeout + 5)
        if not rows or rows[-1][0] != "up":
            if must:
                raise Failure(f"{tag}: not all up in {timeout} s: {rows}; "
                              f"see {self.logpath}")
            return None
        return t0, int(rows[-1][1]), int(rows[-1][2])

    # ---- start and stop --------------------------------------------------

    def start_runsvdir(self):
        log(f"starting runsvdir -P {self.svdir}")
        self.runsvdir = subprocess.Popen(
            ["runsvdir", "-P", str(self.svdir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self.logf, start_new_session=True,
            preexec_fn=die_with_parent)
        st = proc_stat(self.runsvdir.pid)
        if st is None or self.runsvdir.poll() is not None:
            raise Failure(f"runsvdir exited at once; see {self.logpath}")
        self.known[self.runsvdir.pid] = st[4]

    def stop_tree(self):
        """SIGHUP to runsvdir (it TERMs every runsv and exits 111; each
        runsv TERMs its worker, waits for it and exits); wait until every
        pid we saw is gone; TERM, then KILL, by pid, whatever is left."""
        for p in list(self.probes):
            if p.poll() is None:
                p.kill()
            p.wait()
            self.probes.remove(p)
        if self.runsvdir is None:
            return True
        if self.runsvdir.poll() is None:
            try:
                self.tree()     # record every pid of the tree as it is now
            except Exception:  # noqa: BLE001 (best effort)
                pass
            n = sum(1 for p, s in self.known.items() if same_process(p, s))
            log(f"stopping: SIGHUP to runsvdir ({n} processes)")
            os.kill(self.runsvdir.pid, signal.SIGHUP)
            try:
                self.runsvdir.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log("runsvdir still there after 30 s: SIGKILL")
                self.runsvdir.kill()
                self.runsvdir.wait()
        end = time.monotonic() + 30
        while time.monotonic() < end:
            reap_orphans()
            if not any(same_process(p, s) for p, s in self.known.items()):
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
            reap_orphans()
        # Last resort: what is left of runsvdir's own session (the runsv
        # processes and workers have sessions of their own, -P).
        sid = self.runsvdir.pid
        rest = [p for p, st in all_procs().items()
                if st[3] == sid and st[2] == sid and st[0] not in ("Z", "X")]
        if rest:
            log(f"{len(rest)} processes left in runsvdir's session: killpg")
            try:
                os.killpg(sid, signal.SIGKILL)
            except OSError:
                pass
        reap_orphans()
        left = [p for p, s in self.known.items() if same_process(p, s)]
        self.runsvdir = None
        if left:
            log(f"WARNING: still alive after the teardown: {left[:10]}")
            return False
        log(f"teardown: all {len(self.known)} processes seen are gone")
        return True

    def stop(self):
        self.stop_tree()
        if self.logf:
            self.logf.close()
            self.logf = None

    # ---- workloads -------------------------------------------------------

    def make_service(self, name):
        d = self.stage / name
        d.mkdir()
        os.symlink(self.worker, d / "run")
        return d

    def bringup_at_start(self):
        """runsvdir started with the N service dirs already there: what a
        boot sees (not the figure; given in bringup_ms's note)."""
        n = len(self.keys)
        log(f"bring-up at start: runsvdir started on {n} service dirs")
        for k in self.keys:
            os.rename(self.make_service(k), self.svdir / k)
        t0, first, last = self.timed_wait(
            self.keys, "start", self.start_runsvdir, 60 + n // 20)
        self.check_tree(self.keys, "bring-up at start")
        ms = (last - t0) / 1e6
        log(f"bring-up at start: {ms:.0f} ms")
        if not self.stop_tree():
            raise Failure("the first tree did not stop cleanly")
        for k in self.keys:
            shutil.rmtree(self.svdir / k)
        return ms, (first - t0) / 1e6

    def bringup(self, at_start):
        n = len(self.keys)
        self.start_runsvdir()
        # Let runsvdir make its first scan (of the empty directory, after
        # its 1 s sleep since the directory is younger than a second), so
        # that the timing starts against a supervisor already running.
        time.sleep(1.5)
        log(f"bring-up: {n} service dirs staged, moved into the service dir")
        for k in self.keys:
            self.make_service(k)

        def move_in():
            for k in self.keys:
                os.rename(self.stage / k, self.svdir / k)

        t0, first, last = self.timed_wait(self.keys, "all", move_in,
                                          60 + n // 20)
        self.up_since = time.monotonic()
        ms = (last - t0) / 1e6
        self.check_tree(self.keys, "bring-up")
        wait = (first - t0) / 1e6
        emit("bringup_ms", round(ms, 1),
             f"N={n} service dirs (each `run` a symlink to the worker, no "
             "shell), made in a staging dir, then timed from just before "
             "moving them (rename) into the directory of a running "
             "`runsvdir -P` until probe_runit (C) saw every "
             "supervise/status show a live pid. runsvdir has no rescan "
             f"command: it looks every {SCAN_S} s and sleeps 1 s more "
             "before a scan when its directory changed in the current "
             f"second, so this includes a 0-{SCAN_S + 1} s wait (the first "
             "service was up after "
             f"{wait:.0f} ms; spawning them all took {ms - wait:.0f} ms "
             "after that). For comparison, runsvdir started with the N "
             f"already there: all up {at_start[0]:.0f} ms after its "
             f"start (first after {at_start[1]:.0f} ms"
             + (": its 1 s sleep, the directory having been written in "
                "that second)" if at_start[1] > 900 else ")")
             + ". runsvdir's stdout /dev/null, its stderr (which runsv and "
             "the workers inherit; the workers write nothing) to a log in "
             "--tmp")
        log(f"bring-up: {ms:.0f} ms (first after {wait:.0f} ms)")

    def lookup_program(self):
        n = self.args.lookups
        log(f"{n} lookups reading supervise/status")
        pids = self.check_tree(self.keys, "lookup")
        rows = self.finish_probe(self.start_probe(
            "lookup", str(self.pathfile(self.keys, "all")), str(n),
            str(SEED)), 120)
        for r in rows:
            if r[0] == "ref" and pids[self.keys[int(r[1])]] != int(r[2]):
                raise Failure(f"supervise/status of {self.keys[int(r[1])]} "
                              f"gave {r[2]}, its worker is "
                              f"{pids[self.keys[int(r[1])]]}")
        total, count, bad = (int(x) for x in rows[-1][1:4])
        if rows[-1][0] != "lookup" or bad:
            raise Failure(f"lookup: {bad} wrong pids")
        ns = total / count
        emit("lookup_program_us", round(ns / 1000, 4),
             f"mean of {count} reads of SERVICEDIR/supervise/status (C, "
             "-O2; open, read 20 bytes, close; pid = bytes 12..15 "
             "little-endian, up if byte 19 is 1: runit has no library, this "
             "is what sv(8) reads) on random keys from one process; every "
             "result checked against the pid read first, and those against "
             "/proc (the worker child of that key's runsv)")
        log(f"program lookup: {ns:.0f} ns")

    def lookup_shell(self):
        runs = self.args.shell_runs
        log(f"{runs} runs of sv status")
        pids = self.check_tree(self.keys, "shell lookup")
        rnd = random.Random(SEED)
        times, base = [], []
        pat = re.compile(r"^run: .*: \(pid (\d+)\) ")
        for _ in range(runs):
            key = rnd.choice(self.keys)
            cmd = ["sv", "status", str(self.svdir / key)]
            t0 = time.perf_counter_ns()
            r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True,
                               timeout=10)
            t1 = time.perf_counter_ns()
            m = pat.match(r.stdout)
            if r.returncode != 0 or not m or int(m[1]) != pids[key]:
                raise Failure(f"sv status {key} printed "
                              f"{r.stdout.strip()!r} (exit {r.returncode}), "
                              f"expected pid {pids[key]}")
            times.append((t1 - t0) / 1000)
            t0 = time.perf_counter_ns()
            subprocess.run(["/bin/true"], stdout=subprocess.PIPE)
            base.append((time.perf_counter_ns() - t0) / 1000)
        med = statistics.median(times)
        emit("lookup_shell_us", round(med, 1),
             f"median of {runs} runs of `sv status SERVICEDIR` over random "
             "keys, each timed around Python's subprocess.run (fork, exec, "
             "read supervise/status, print `run: DIR: (pid N) Ts`, exit, "
             "wait); the pid parsed and checked against the worker's pid in "
             "/proc. /bin/true timed the same way: "
             f"{statistics.median(base):.0f} us")
        log(f"shell lookup: {med:.0f} us")

    def memory(self):
        t = self.tree()
        sups = [s for s, _ in t.values()]
        if len(sups) != len(self.keys):
            raise Failure(f"memory: {len(sups)} runsv, expected "
                          f"{len(self.keys)}")
        main = smaps_rollup(self.runsvdir.pid)
        total = main["Pss"]
        for s in sups:
            total += smaps_rollup(s)["Pss"]
        emit("mem_kib", total,
             f"sum of Pss (smaps_rollup) of runsvdir and its {len(sups)} "
             f"runsv processes (one per service) with {len(self.keys)} "
             "workers running; workers not counted")
        emit("mem_procs", 1 + len(sups), "runsvdir + one runsv per worker")
        emit("rss_main_kib", main["Rss"], "Rss of runsvdir")
        log(f"memory: {total} KiB Pss in {1 + len(sups)} processes")

    def restart(self):
        c = self.args.crashes
        order = list(self.keys)
        random.Random(SEED).shuffle(order)
        wait = self.up_since + MIN_UP_US / 1e6 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        log(f"restart: {c} SIGKILLs, round-robin over {len(order)} "
            "shuffled keys")
        rows = self.finish_probe(self.start_probe(
            "restart", str(self.pathfile(order, "order")), str(c),
            str(CRASH_GAP_US), str(MIN_UP_US), str(RESTART_TIMEOUT_S)),
            c * (RESTART_TIMEOUT_S + MIN_UP_US / 1e6) + 30)
        lat = sorted(int(r[1]) / 1000 for r in rows if r[0] == "restart")
        lost = sum(1 for r in rows if r[0] == "lost")
        self.check_tree(self.keys, "after the restarts")
        if not lat:
            raise Failure(f"restart: no restart seen ({lost} lost)")
        note = (f"SIGKILL of the worker's pid until supervise/status shows a "
                "new pid with state run that is alive (kill(pid,0)); C spin "
                f"with sched_yield; {len(lat)} crashes round-robin over "
                f"{len(order)} shuffled keys, each worker up > "
                f"{MIN_UP_US / 1e6:g} s (runsv sleeps 1 s before restarting "
                "a ./run that ran < 1 s; otherwise at once; nothing to "
                f"configure), >= {CRASH_GAP_US / 1000:g} ms between kills; "
                f"lost: {lost}. runsv publishes the pid right after fork(), "
                "before the child's exec")
        emit("restart_p50_us", round(nearest_rank(lat, 0.50), 1), note)
        emit("restart_p99_us", round(nearest_rank(lat, 0.99), 1),
             "nearest rank; see restart_p50_us")
        emit("restart_max_us", round(lat[-1], 1), "see restart_p50_us")
        emit("restart_n", len(lat), f"lost: {lost}")
        log(f"restart: p50 {nearest_rank(lat, 0.5):.0f} us, max "
            f"{lat[-1]:.0f} us, lost {lost}")

    def remove_service(self, name, tag, forget=True):
        """Take NAME out: rename it out of the service dir, `sv exit` it
        (runsv TERMs the worker, waits for it, exits), wait until its runsv
        and worker are gone, then (FORGET) give runsvdir time to scan once
        more (it wakes every 5 s, plus 1 s if the mtime is this second) so
        that it has dropped the entry and its slot is free again."""
        t = self.tree()
        procs = [p for p in t.get(name, ()) if p]
        gone = self.trash / tag
        os.rename(self.svdir / name, gone)
        if procs:
            r = subprocess.run(["sv", "exit", str(gone)],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, timeout=20)
            if r.returncode != 0:
                raise Failure(f"sv exit {name}: {r.stderr.strip()}")
        end = time.monotonic() + 15
        while any(same_process(p, self.known[p]) for p in procs):
            if time.monotonic() > end:
                raise Failure(f"{name}'s runsv did not exit after sv exit")
            time.sleep(0.01)
        if forget:
            time.sleep(SCAN_S + 1.5)
        shutil.rmtree(gone)

    def add_once(self, k):
        name = "extra"
        self.make_service(name)
        t0, _, last = self.timed_wait(
            [name], f"extra{k}",
            lambda: os.rename(self.stage / name, self.svdir / name),
            SCAN_S * 3 + 5)
        ms = (last - t0) / 1e6
        self.check_tree([name], "add")
        self.remove_service(name, f"extra{k}", forget=k + 1 < ADD_RUNS)
        return ms

    def add_worker(self):
        n = len(self.keys)
        pre = ""
        if n + 1 > MAXSERVICES:
            # Show the refusal, then make room.
            log(f"add: trying one service more than N={n} (runsvdir's "
                f"limit is {MAXSERVICES})")
            self.make_service("extra")
            res = self.timed_wait(
                ["extra"], "extra-over",
                lambda: os.rename(self.stage / "extra", self.svdir / "extra"),
                SCAN_S + 3, must=False)
            refused = "too many services" in self.logpath.read_text(
                errors="replace")
            if res is not None:
                raise Failure("runsvdir started a 1001st service: "
                              "MAXSERVICES is not 1000 here")
            self.remove_service("extra", "extra-over")
            victim = self.keys[-1]
            self.remove_service(victim, victim)
            self.retired.append(victim)
            pre = (f"runsvdir refuses more than {MAXSERVICES} services "
                   f"(MAXSERVICES in runsvdir.c): with N={n} running, "
                   f"`extra` was not started after {SCAN_S + 3} s"
                   + (" and runsvdir logged `unable to start runsv extra: "
                      "too many services`" if refused else "")
                   + f". So these adds ran with {victim} removed first "
                   f"({n - 1} others running + extra = {n}). ")
        log(f"add: {ADD_RUNS} times (each waits for runsvdir's rescan)")
        runs = [self.add_once(k) for k in range(ADD_RUNS)]
        med = statistics.median(runs)
        emit("add_worker_ms", round(med, 1),
             pre + f"Median of {ADD_RUNS}: service dir `extra` made in a "
             "staging dir, timed from just before moving it into the "
             "service dir until supervise/status shows a live pid. "
             f"runsvdir only looks every {SCAN_S} s (no command to make it "
             "look; +1 s when the directory changed in the current second), "
             f"so this is mostly that 0-{SCAN_S + 1} s wait. Removed "
             "between runs (moved out, sv exit, runsv gone, then "
             f"{SCAN_S + 1.5:g} s for runsvdir to drop it). Runs: "
             + ", ".join(f"{x:.0f}" for x in runs))
        log(f"add: {med:.0f} ms")

    def run(self):
        for d in (self.svdir, self.stage, self.trash):
            d.mkdir(parents=True)
        self.compile_probe()
        self.logf = open(self.logpath, "wb")
        at_start = self.bringup_at_start()
        self.bringup(at_start)
        self.lookup_program()
        self.lookup_shell()
        self.memory()
        self.restart()
        self.add_worker()


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
        print("peer_runit: counts must be >= 1", file=sys.stderr)
        return 2
    if a.workers > MAXSERVICES:
        print(f"peer_runit: runsvdir starts at most {MAXSERVICES} services "
              f"(MAXSERVICES in runsvdir.c); --workers {a.workers} cannot "
              "run", file=sys.stderr)
        return 1
    for prog in ("runsvdir", "runsv", "sv", "cc"):
        if shutil.which(prog) is None:
            print(f"peer_runit: {prog} not found (apt-get install runit)",
                  file=sys.stderr)
            return 1
    if not os.access(a.worker, os.X_OK):
        print(f"peer_runit: worker {a.worker} is not executable",
              file=sys.stderr)
        return 1
    if not Path(a.tmp).is_dir():
        print(f"peer_runit: --tmp {a.tmp} is not a directory",
              file=sys.stderr)
        return 1

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    def on_sigint(_signum, _frame):
        raise KeyboardInterrupt

    # Explicit handlers, also when started with SIGINT ignored (background).
    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    # runsv processes outlive runsvdir at the teardown: adopt and reap them.
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    emit("version", None, f"runit {pkg_version('runit') or '(not from dpkg)'}"
         " (runsvdir, runsv, sv; Debian build without inotify)")
    rt = Runit(a)
    rc = 0
    try:
        rt.run()
    except Failure as e:
        print(f"peer_runit: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("peer_runit: interrupted", file=sys.stderr)
        rc = 130
    except SystemExit as e:
        print(f"peer_runit: stopped by a signal ({e.code})", file=sys.stderr)
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        rt.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
