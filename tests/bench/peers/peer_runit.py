#!/usr/bin/env python3
"""runit's side of the peer comparison (see README.md in this folder).

    python3 peer_runit.py --workers N --crashes C --shell-runs R \
        --lookups L --worker PATH --tmp DIR [--build BUILDDIR]

Starts a private `runsvdir -P` on a service directory in DIR, in a session
of its own, and measures the workloads of the contract with N service
directories w0000.. (each `run` a symlink to the worker binary: runsv
execs the worker itself, no shell). runit has no library: a program's
key -> pid lookup reads SERVICEDIR/supervise/status, the 20-byte binary
record runsv keeps (pid in bytes 12..15, little-endian; state in byte 19),
as sv(8) does. The loops that read it are C (probe_runit.c with probe.h,
compiled into DIR with cc -O2).

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
    as `sv exit`: TERM + CONT to ./run, wait for it, exit. With -P the runsv
    processes have sessions of their own and outlive runsvdir for a
    moment: this script is their subreaper, and reaps them.

Prints one JSON object per line on stdout; progress goes to stderr.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import peerlib  # noqa: E402
from peerlib import Failure, emit, log, median  # noqa: E402

ADD_RUNS = 3
MAXSERVICES = 1000  # runsvdir.c
SCAN_S = 5  # runsvdir's rescan period without inotify


class Runit(peerlib.ScanDirPeer):
    """A private runsvdir tree, its service directories, and the probe."""

    name = "runit"
    scanner = "runsvdir"
    supervisor = "runsv"
    scan_name = "service"
    tools = ("runsvdir", "runsv", "sv", "cc")
    install = "apt-get install runit"

    def __init__(self, args):
        if args.workers > MAXSERVICES:
            raise Failure(f"runsvdir starts at most {MAXSERVICES} services "
                          f"(MAXSERVICES in runsvdir.c); --workers "
                          f"{args.workers} cannot run")
        super().__init__(args)
        if not peerlib.set_subreaper():
            log("warning: PR_SET_CHILD_SUBREAPER failed: the runsv processes "
                "left at the teardown go to init")

    def make_service(self, name, run=None):
        return super().make_service(name, run or self.worker)

    def start_runsvdir(self):
        """runsvdir -P: each runsv in a session of its own. SIGHUP, which
        takes the tree down, if this script dies."""
        self.start_root(["runsvdir", "-P", self.scan], signal.SIGHUP)

    def stop_root(self):
        """SIGHUP: runsvdir TERMs every runsv and exits 111; each runsv
        TERMs its worker, waits for it and exits."""
        os.kill(self.root.pid, signal.SIGHUP)

    # -- the workloads ------------------------------------------------------

    def bringup_at_start(self):
        """runsvdir started with the N service dirs already there: what a
        boot sees (not the figure; given in bringup_ms's note)."""
        n = len(self.keys)
        log(f"bring-up at start: runsvdir started on {n} service dirs")
        for k in self.keys:
            os.rename(self.make_service(k), self.scan / k)
        up = self.bring_up(self.start_runsvdir, 60 + n // 20)
        ms = (up.last - up.t0) / 1e6
        log(f"bring-up at start: {ms:.0f} ms")
        if self.stop_tree():
            raise Failure("the first tree did not stop cleanly")
        for k in self.keys:
            shutil.rmtree(self.scan / k)
        return ms, (up.first - up.t0) / 1e6

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
                os.rename(self.stage / k, self.scan / k)

        up = self.bring_up(move_in, 60 + n // 20)
        ms = (up.last - up.t0) / 1e6
        wait = (up.first - up.t0) / 1e6
        emit("bringup_ms", ms,
             f"N={n} service dirs (each `run` a symlink to the worker, no "
             "shell), made in a staging dir, then timed from just before "
             "moving them (rename) into the directory of a running "
             "`runsvdir -P` until probe_runit (C) saw every "
             "supervise/status show a live pid. runsvdir has no rescan "
             f"command: it looks every {SCAN_S} s and sleeps 1 s more "
             "before a scan when its directory changed in the current "
             f"second, so this includes a 0-{SCAN_S + 1} s wait (the first "
             f"service was up after {wait:.0f} ms; spawning them all took "
             f"{ms - wait:.0f} ms after that). For comparison, runsvdir "
             f"started with the N already there: all up {at_start[0]:.0f} "
             f"ms after its start (first after {at_start[1]:.0f} ms"
             + (": its 1 s sleep, the directory having been written in "
                "that second)" if at_start[1] > 900 else ")")
             + ". runsvdir's stdout /dev/null, its stderr (which runsv and "
             "the workers inherit; the workers write nothing) to a log in "
             "--tmp")
        log(f"bring-up: {ms:.0f} ms (first after {wait:.0f} ms)")

    def lookup_program(self):
        super().lookup_program(
            "a read of SERVICEDIR/supervise/status (open, read 20 bytes, "
            "close; pid = bytes 12..15 little-endian, up if byte 19 is 1: "
            "runit has no library, this is what sv(8) reads)")

    def lookup_shell(self):
        pat = re.compile(r"^run: .*: \(pid (\d+)\) ")

        def parse(out):
            m = pat.match(out)
            return m[1] if m else out

        super().lookup_shell(
            lambda k: ["sv", "status", str(self.scan / k)], parse,
            "`sv status SERVICEDIR` (fork, exec, read supervise/status, "
            "print `run: DIR: (pid N) Ts`, exit, wait), the pid parsed")

    def restart(self):
        self.wait_until_up_long_enough()
        lat, lost = self.crashes(self.keys, "")
        peerlib.emit_restarts(
            lat, lost,
            self.restart_note(lat, lost, "supervise/status shows a new pid "
                              "with state run")
            + ". runsv sleeps 1 s before restarting a ./run that ran < 1 s, "
            "otherwise restarts at once; nothing to configure. runsv "
            "publishes the pid right after fork(), before the child's exec")

    def remove_service(self, name, tag, forget=True):
        """Take NAME out: rename it out of the service dir, `sv exit` it
        (runsv TERMs the worker, waits for it, exits), wait until its runsv
        and worker are gone, then (FORGET) give runsvdir time to scan once
        more (it wakes every 5 s, plus 1 s if the mtime is this second) so
        that it has dropped the entry and its slot is free again."""
        procs = [p for p in self.tree().get(name, ()) if p]
        gone = self.trash / tag
        os.rename(self.scan / name, gone)
        if procs:
            r = subprocess.run(["sv", "exit", str(gone)],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, timeout=20)
            if r.returncode != 0:
                raise Failure(f"sv exit {name}: {r.stderr.strip()}")
        if self.procs.wait_gone(15, procs):
            raise Failure(f"{name}'s runsv did not exit after sv exit")
        if forget:
            time.sleep(SCAN_S + 1.5)
        shutil.rmtree(gone)

    def add_once(self, k):
        name = "extra"
        self.make_service(name)
        up = self.probe.wait_up(
            self.paths([name]), SCAN_S * 3 + 5,
            lambda: os.rename(self.stage / name, self.scan / name))
        self.check_tree([name], "add")
        self.remove_service(name, f"extra{k}", forget=k + 1 < ADD_RUNS)
        return (up.last - up.t0) / 1e6

    def add_worker(self):
        n = len(self.keys)
        pre = ""
        if n + 1 > MAXSERVICES:
            # Show the refusal, then make room.
            log(f"add: trying one service more than N={n} (runsvdir's "
                f"limit is {MAXSERVICES})")
            self.make_service("extra")
            res = self.probe.wait_up(
                self.paths(["extra"]), SCAN_S + 3,
                lambda: os.rename(self.stage / "extra", self.scan / "extra"),
                must=False)
            refused = "too many services" in self.logpath.read_text(
                errors="replace")
            if res is not None:
                raise Failure("runsvdir started a 1001st service: "
                              "MAXSERVICES is not 1000 here")
            self.remove_service("extra", "extra-over")
            victim = self.keys[-1]
            self.remove_service(victim, victim)
            pre = (f"runsvdir refuses more than {MAXSERVICES} services "
                   f"(MAXSERVICES in runsvdir.c): with N={n} running, "
                   f"`extra` was not started after {SCAN_S + 3} s"
                   + (" and runsvdir logged `unable to start runsv extra: "
                      "too many services`" if refused else "")
                   + f". So these adds ran with {victim} removed first "
                   f"({n - 1} others running + extra = {n}). ")
        log(f"add: {ADD_RUNS} times (each waits for runsvdir's rescan)")
        runs = [self.add_once(k) for k in range(ADD_RUNS)]
        emit("add_worker_ms", median(runs),
             pre + f"Median of {ADD_RUNS}: service dir `extra` made in a "
             "staging dir, timed from just before moving it into the "
             "service dir until supervise/status shows a live pid. "
             f"runsvdir only looks every {SCAN_S} s (no command to make it "
             "look; +1 s when the directory changed in the current second), "
             f"so this is mostly that 0-{SCAN_S + 1} s wait. Removed "
             "between runs (moved out, sv exit, runsv gone, then "
             f"{SCAN_S + 1.5:g} s for runsvdir to drop it). "
             + peerlib.runs_note(runs, "{:.0f}"))
        emit("add_worker_api_ms", None,
             "no API: a program does what add_worker_ms does")
        log(f"add: {median(runs):.0f} ms")

    def run(self):
        emit("version", None,
             f"runit {peerlib.pkg_version('runit') or '(not from dpkg)'} "
             "(runsvdir, runsv, sv; Debian build without inotify)")
        self.probe.compile()
        at_start = self.bringup_at_start()
        self.bringup(at_start)
        self.lookup_program()
        self.lookup_shell()
        self.memory()
        self.restart()
        self.add_worker()


if __name__ == "__main__":
    sys.exit(peerlib.main(Runit))
