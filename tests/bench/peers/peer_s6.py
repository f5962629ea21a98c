#!/usr/bin/env python3
"""s6's side of the peer comparison (see README.md in this folder).

    python3 peer_s6.py --workers N --crashes C --shell-runs R \
        --lookups L --worker PATH --tmp DIR [--build BUILDDIR]

Starts a private s6-svscan on an empty scan directory in DIR, in a session
of its own, and measures the workloads of the contract with N service
directories w0000... The loops that read s6's status records are C
(probe_s6.c with probe.h, compiled into DIR with cc -O2 against libs6); a
program's key -> pid lookup is s6_svstatus_read(SCANDIR/KEY) -> st.pid.

What s6 does that matters here (s6's documentation, the s6-supervise
source, and what strace shows of 2.11.3.2):
  * s6-svscan only scans when told (`s6-svscanctl -a`, or "a" written to
    its control fifo SCANDIR/.s6-svscan/control) unless given -t; we pass
    -t 0 (the default) so that nothing starts before we ask.
  * s6-svscan -c MAX caps the number of s6-supervise processes (2.11.3.2:
    services and loggers alike); we pass room for all of ours.
  * s6-supervise 2.11.3.2 respawns ./run 1 s after it died, unless the
    service notified readiness (notification-fd), in which case it respawns
    at readiness + 1 s, i.e. at once if it was ready for more than 1 s (see
    set_down_and_ready() in s6-supervise.c; strace shows the 1 s ppoll).
    So every service here notifies: its notification-fd file says 3, and
    its `run` is s6_notify_exec, a tiny static C program that writes the
    readiness newline on fd 3, closes it and execs the worker (no shell;
    the running process is the worker itself, same pid). Each worker is
    killed only after it has been up > 1 s. The plain configuration (`run`
    a symlink to the worker, no notification) is timed too, on a few extra
    services, for the note of restart_p50_us: about 1 s.
  * While ./finish runs (spawned after every death, even when there is no
    ./finish file: that child fails to exec), supervise/status holds that
    child's pid with flagfinishing set: the probe counts it as down.
  * s6-svscanctl -t (SIGTERM) makes s6-svscan tell every s6-supervise to
    bring its service down and exit, wait for the whole tree, then exit.

Prints one JSON object per line on stdout; progress goes to stderr.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import peerlib  # noqa: E402
from peerlib import Failure, emit, log, median  # noqa: E402

ADD_RUNS = 5


class S6(peerlib.ScanDirPeer):
    """A private s6-svscan tree, its service directories, and the probe."""

    name = "s6"
    scanner = "s6-svscan"
    supervisor = "s6-supervise"
    probe_libs = ("-ls6", "-lskarnet")
    tools = ("s6-svscan", "s6-supervise", "s6-svscanctl", "s6-svstat",
             "s6-svc", "cc")
    install = "apt-get install s6 libs6-dev skalibs-dev"
    # Crashes timed on the plain services: each restart there waits 1 s,
    # so they stay few whatever --crashes says.
    PLAIN_CRASHES = 20

    def __init__(self, args):
        super().__init__(args)
        self.notify = self.base / "s6_notify_exec"  # every service's run
        self.static = None  # whether it could be linked statically
        self.cmax = None

    # -- the tree -----------------------------------------------------------

    def compile_notify(self):
        """s6_notify_exec.c with the worker's path built in; static if the
        C library allows it."""
        src = peerlib.HERE / "s6_notify_exec.c"
        flags = [f'-DWORKER="{self.worker}"']
        try:
            peerlib.compile_c(src, self.notify, ["-static"] + flags)
            self.static = True
        except Failure:
            peerlib.compile_c(src, self.notify, flags)
            self.static = False

    def make_service(self, name, run=None):
        """A service that notifies readiness (run = s6_notify_exec); with
        RUN, a plain one whose `run` is RUN."""
        d = super().make_service(name, run or self.notify)
        if run is None:
            (d / "notification-fd").write_text("3\n")
        return d

    def svscanctl(self, *opts):
        r = subprocess.run(["s6-svscanctl", *opts, str(self.scan)],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        if r.returncode != 0:
            raise Failure(f"s6-svscanctl {' '.join(opts)}: exit "
                          f"{r.returncode}: {r.stderr.strip()}")

    def start(self):
        # N workers, `extra`, and the plain services of restart_plain().
        n = len(self.keys)
        self.cmax = n + 16 + min(self.args.crashes, n)
        self.start_root(["s6-svscan", "-c", self.cmax, "-t", "0", self.scan],
                        signal.SIGTERM)
        # Ready when its control fifo has a reader: s6-svscanctl succeeds.
        end = time.monotonic() + 10
        while subprocess.run(["s6-svscanctl", "-z", str(self.scan)],
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL).returncode != 0:
            if self.root.poll() is not None:
                raise Failure(f"s6-svscan exited {self.root.returncode}; "
                              f"see {self.logpath}")
            if time.monotonic() > end:
                raise Failure("s6-svscan did not open its control fifo")
            time.sleep(0.01)

    def stop_root(self):
        try:
            self.svscanctl("-t")
        except (Failure, OSError, subprocess.SubprocessError):
            os.kill(self.root.pid, signal.SIGTERM)

    # -- the workloads ------------------------------------------------------

    def bringup(self):
        n = len(self.keys)
        log(f"bring-up: {n} service dirs staged, moved into the scan dir")
        for k in self.keys:
            os.rename(self.make_service(k), self.scan / k)
        if self.tree():
            raise Failure("s6-svscan started services before being told")
        up = self.bring_up(lambda: self.svscanctl("-a"), 60 + n // 20)
        ms = (up.last - up.t0) / 1e6
        emit("bringup_ms", ms,
             f"N={n} service dirs (each with notification-fd 3 and `run` "
             "s6_notify_exec, which notifies readiness and execs the worker: "
             "see the version's note), made in a staging dir and moved into "
             "the scan dir untimed (s6-svscan -t 0 does not look by itself), "
             "timed from just before `s6-svscanctl -a SCANDIR` until "
             "probe_s6 (C) saw every supervise/status show a live pid "
             "through s6_svstatus_read; first service up after "
             f"{(up.first - up.t0) / 1e6:.1f} ms. `s6-svscan -c {self.cmax} "
             "-t 0 SCANDIR` in its own session, stdout /dev/null, stderr "
             "(which the workers inherit; they write nothing) to a log in "
             "--tmp")
        log(f"bring-up: {ms:.0f} ms")

    def restart(self):
        """Workload 2 on the N workers, which notify readiness."""
        self.wait_until_up_long_enough()
        return self.crashes(self.keys, "")

    def restart_plain(self):
        """The same crashes on plain services (`run` the worker itself, no
        readiness notification), which s6-supervise 2.11 restarts only 1 s
        after a death. On their own service dirs, after the other
        workloads, so that nothing else sees them."""
        m = min(self.args.crashes, len(self.keys), self.PLAIN_CRASHES)
        names = [f"plain{i:04d}" for i in range(m)]
        for name in names:
            os.rename(self.make_service(name, self.worker), self.scan / name)
        self.probe.wait_up(self.paths(names), 60,
                           lambda: self.svscanctl("-a"))
        self.check_tree(names, "plain services")
        time.sleep(self.MIN_UP_US / 1e6)
        return self.crashes(names, " (plain services)", m)

    def emit_restart(self, main, plain):
        lat, lost = main
        static = "static " if self.static else ""
        note = (self.restart_note(lat, lost, "s6_svstatus_read shows a new "
                                  "pid that is up (flagfinishing clear)")
                + ". Every service notifies readiness (notification-fd 3; "
                f"`run` is s6_notify_exec, a {static}C program that writes "
                "the newline on fd 3, closes it and execs the worker: no "
                "shell, and the running process is still bench-worker, same "
                "pid), because s6-supervise 2.11.3.2 "
                "otherwise waits 1 s after every death before it respawns "
                "(set_down_and_ready(): deadline = now + 1 s unless the "
                "service notified readiness, then readiness + 1 s; nothing "
                "else turns it off).")
        if isinstance(plain, tuple):
            pl, plost = plain
            note += (" The plain configuration (`run` a symlink to the "
                     f"worker, no notification; {len(pl)} crashes over "
                     f"{min(self.args.crashes, len(self.keys))} extra such "
                     f"services, lost {plost}): p50 "
                     f"{peerlib.nearest_rank(pl, 0.5):.0f} us, p99 "
                     f"{peerlib.nearest_rank(pl, 0.99):.0f} us, max "
                     f"{max(pl):.0f} us: the 1 s wait.")
        else:
            note += f" (The run on plain services failed: {plain}.)"
        peerlib.emit_restarts(lat, lost, note)

    def lookup_program(self):
        super().lookup_program(
            "s6_svstatus_read(SCANDIR/KEY) (libs6): open, read and close of "
            "supervise/status (35 bytes)")

    def lookup_shell(self):
        super().lookup_shell(
            lambda k: ["s6-svstat", "-p", str(self.scan / k)], str.strip,
            "`s6-svstat -p SCANDIR/KEY` (fork, exec, read supervise/status, "
            "print the pid, exit, wait)")

    def remove_extra(self, k):
        """Take `extra` out: down, out of the scan dir, s6-svscanctl -an,
        its s6-supervise gone."""
        sup = self.tree()["extra"][0]
        r = subprocess.run(["s6-svc", "-wd", "-T", "10000", "-d",
                            str(self.scan / "extra")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, timeout=20)
        if r.returncode != 0:
            raise Failure(f"s6-svc -wd -d extra: {r.stderr.strip()}")
        gone = self.trash / f"extra{k}"
        os.rename(self.scan / "extra", gone)
        self.svscanctl("-an")
        if self.procs.wait_gone(10, [sup]):
            raise Failure("removed extra's s6-supervise did not exit")
        shutil.rmtree(gone)

    def add_runs(self, add):
        """ADD_RUNS times: ADD() adds `extra` and returns its Up; the times
        (ms) from its t0 until it showed a live pid."""
        times = []
        for k in range(ADD_RUNS):
            up = add()
            times.append((up.last - up.t0) / 1e6)
            self.check_tree(["extra"], "add")
            self.remove_extra(k)
        return times

    def add_worker(self):
        log(f"add with s6-svscanctl -a: {ADD_RUNS} times")

        def add():
            os.rename(self.make_service("extra"), self.scan / "extra")
            return self.probe.wait_up(self.paths(["extra"]), 30,
                                      lambda: self.svscanctl("-a"))

        times = self.add_runs(add)
        emit("add_worker_ms", median(times),
             f"median of {ADD_RUNS}: service dir `extra` (as the others) "
             "made and moved into the scan dir untimed, then timed from just "
             "before `s6-svscanctl -a SCANDIR` until s6_svstatus_read shows "
             f"a live pid; N={len(self.keys)} running. Removed between runs "
             "(s6-svc -wd -d, moved out, s6-svscanctl -an, its s6-supervise "
             "gone). " + peerlib.runs_note(times))
        log(f"add (s6-svscanctl): {median(times):.1f} ms")

    def add_worker_api(self):
        log(f"add from C (mkdir + the control fifo): {ADD_RUNS} times")

        def add():
            paths = self.paths(["extra"])
            rows = self.probe.run("add-api", self.probe.items_file(paths),
                                  30, self.notify, timeout=90)
            return self.probe.up(rows, paths)

        times = self.add_runs(add)
        emit("add_worker_api_ms", median(times),
             f"median of {ADD_RUNS}, with N={len(self.keys)} running, from C "
             "(probe_s6.c): mkdir SCANDIR/extra, its `run` symlink and "
             "notification-fd file (as the others), then \"a\" written to "
             "SCANDIR/.s6-svscan/control with libs6's s6_svc_writectl() "
             "(what s6-svscanctl -a does), then s6_svstatus_read until it "
             "shows a live pid; timed from before the mkdir. Removed as for "
             "add_worker_ms. " + peerlib.runs_note(times))
        log(f"add (API): {median(times):.1f} ms")

    def run(self):
        emit("version", None,
             f"s6 {peerlib.pkg_version('s6') or '(not from dpkg)'}, "
             f"libs6-dev {peerlib.pkg_version('libs6-dev') or '?'}, skalibs "
             f"{peerlib.pkg_version('skalibs-dev') or '?'}; every service "
             "notifies readiness (notification-fd 3, `run` s6_notify_exec: "
             "a tiny C program, compiled at run time, that writes the "
             "newline on fd 3, closes it and execs the worker, so the "
             "running process is still bench-worker, no shell), because "
             "s6-supervise waits 1 s before it restarts a service that never "
             "reported ready")
        self.probe.compile()
        self.compile_notify()
        self.start()
        self.bringup()
        self.lookup_program()
        self.lookup_shell()
        self.memory()
        self.add_worker()
        self.add_worker_api()
        main = self.restart()
        try:
            plain = self.restart_plain()
        except (Failure, OSError) as e:
            log(f"the plain services' restart run failed: {e}")
            plain = str(e)
        self.emit_restart(main, plain)


if __name__ == "__main__":
    sys.exit(peerlib.main(S6))
