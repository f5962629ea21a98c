#!/usr/bin/env python3
"""peer_supervisord.py: the supervisord side of the keyvisor peer comparison.

Drives a private supervisord (Debian package `supervisor`, 4.2.5) through the
workloads of tests/bench/peers (see the contract there): bring-up of N keyed
workers, restart latency after SIGKILL, key -> pid lookups from the shell and
from a program, adding one worker at runtime, and supervisord's own memory.
Prints one JSON object per line on stdout (the first is the version), and
progress on stderr.

    python3 tests/bench/peers/peer_supervisord.py --workers N --crashes C \
        --shell-runs R --lookups L --worker PATH --tmp DIR [--build BUILDDIR]

Python 3 standard library only.  The XML-RPC client is xmlrpc.client over a
tiny Unix-socket transport written here (equivalent to the
supervisor.xmlrpc.SupervisorTransport that supervisor ships: one persistent
HTTP/1.1 connection to the server's socket, one request per call).

Everything the script starts (supervisord, each supervisorctl) runs in its
own session and is stopped by pid at the end, also on failure and on
SIGINT/SIGTERM.  Every worker pid seen is remembered with its start time and
checked at the end; a worker that outlived supervisord is killed by pid.
"""

import argparse
import http.client
import json
import math
import os
import random
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import xmlrpc.client

PEER = "supervisord"
SUPERVISORD = "/usr/bin/supervisord"
SUPERVISORCTL = "/usr/bin/supervisorctl"

# supervisord's process state codes (supervisor/states.py, ProcessStates).
RUNNING = 20
# supervisord's own state code for "running" (SupervisorStates.RUNNING).
SV_RUNNING = 1
# xmlrpc Faults.BAD_NAME: no such process / group.
BAD_NAME = 10

# The program API (XML-RPC) is slow, so its lookup count is capped (the
# contract allows ~2000) and time-boxed; the note says what was done.
LOOKUP_CAP = 2000
LOOKUP_BUDGET_S = 60.0
ADD_RUNS = 5           # adds of `extra` (median); fewer if an add is slow
CRASH_TIMEOUT_S = 10.0  # a restart not seen within this is counted as lost
STARTUP_TIMEOUT_S = 30.0


def log(msg):
    """Progress and diagnostics go to stderr."""
    print("peer_supervisord: " + msg, file=sys.stderr, flush=True)


def emit(metric, value, note=""):
    """One result line on stdout, as the contract wants."""
    if isinstance(value, float):
        value = round(value, 3)
    print(json.dumps({"peer": PEER, "metric": metric, "value": value,
                      "note": note}), flush=True)


class Fail(Exception):
    """A clear, one-line reason why the run could not be done."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; carries the signal number."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def on_signal(signum, _frame):
    raise Interrupted(signum)


# --------------------------------------------------------------------------
# /proc helpers

def proc_stat(pid):
    """(ppid, session, starttime) of pid from /proc/PID/stat, or None.

    starttime (clock ticks since boot) tells a pid from a later process that
    reuses the same number, so cleanup never kills a stranger."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces or ')': split after the
    # last ')'.  Then: state ppid pgrp session ... starttime is field 22.
    rest = data[data.rindex(b")") + 2:].split()
    return int(rest[1]), int(rest[3]), int(rest[19])


def alive(pid):
    """kill(pid, 0) == 0, the contract's definition of alive."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def smaps_rollup(pid):
    """Pss and Rss (KiB) of one process from /proc/PID/smaps_rollup."""
    pss = rss = None
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    return pss, rss


def nearest_rank(sorted_values, q):
    """Nearest-rank percentile q (0..1] of an ascending list."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


# --------------------------------------------------------------------------
# XML-RPC over supervisord's Unix socket

class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client connection to a Unix-domain socket path."""

    def __init__(self, path, timeout=30.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


class UnixTransport(xmlrpc.client.Transport):
    """xmlrpc.client transport that keeps one HTTP/1.1 connection open to
    the Unix socket (xmlrpc.client.Transport already reuses the connection
    it caches in self._connection, and reconnects once if it went stale)."""

    def __init__(self, path):
        super().__init__()
        self.unix_path = path

    def make_connection(self, host):
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        self._connection = host, UnixHTTPConnection(self.unix_path)
        return self._connection[1]


def rpc_proxy(sock_path):
    """A ServerProxy on supervisord's XML-RPC endpoint (/RPC2)."""
    return xmlrpc.client.ServerProxy("http://localhost/RPC2",
                                     transport=UnixTransport(sock_path))


# --------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = os.path.abspath(args.tmp)
        self.conf = os.path.join(self.tmp, "supervisord.conf")
        self.confd = os.path.join(self.tmp, "conf.d")
        self.sock = os.path.join(self.tmp, "supervisor.sock")
        self.sv = None         # Popen of supervisord
        self.sv_start = None   # its starttime (clock ticks), for the sid scan
        self.ctl = None        # the supervisorctl Popen running now, if any
        self.rpc = None
        self.seen = {}         # every worker pid seen -> its starttime
        self.pids = {}         # key -> current pid
        width = max(4, len(str(args.workers - 1)))
        self.keys = ["w%0*d" % (width, i) for i in range(args.workers)]
        self.worker = os.path.abspath(args.worker)

    # ---- configuration ---------------------------------------------------

    @staticmethod
    def ini_value(s):
        """supervisord expands %(name)s in values: escape '%'."""
        return s.replace("%", "%%")

    def write_main_conf(self, minfds, minprocs):
        conf = f"""\
; Private supervisord for the keyvisor peer benchmark (peer_supervisord.py).
[unix_http_server]
file={self.ini_value(self.sock)}
chmod=0700

[supervisord]
nodaemon=true
silent=true
logfile={self.ini_value(os.path.join(self.tmp, "supervisord.log"))}
pidfile={self.ini_value(os.path.join(self.tmp, "supervisord.pid"))}
childlogdir={self.ini_value(self.tmp)}
loglevel=info
minfds={minfds}
minprocs={minprocs}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{self.ini_value(self.sock)}

[include]
files={self.ini_value(self.confd)}/*.conf
"""
        with open(self.conf, "w") as f:
            f.write(conf)

    def program_conf(self, name):
        """One [program:NAME] section running the worker directly (supervisord
        fork+execs the command line it split with shlex; no shell)."""
        return f"""\
[program:{name}]
command={self.ini_value(shlex.quote(self.worker))}
autostart=true
autorestart=true
startsecs=0
startretries=1000000
redirect_stderr=true
stdout_logfile=NONE
stopsignal=TERM
stopwaitsecs=5
"""

    def write_program(self, name):
        """Write conf.d/NAME.conf atomically (the temp name does not match
        the include glob *.conf)."""
        path = os.path.join(self.confd, name + ".conf")
        with open(path + ".tmp", "w") as f:
            f.write(self.program_conf(name))
        os.rename(path + ".tmp", path)

    # ---- processes -------------------------------------------------------

    def remember(self, pid):
        """Record a worker pid (with its start time) for the final check."""
        if pid and pid not in self.seen:
            st = proc_stat(pid)
            if st is not None:
                self.seen[pid] = st[2]

    def supervisorctl(self, *words, timeout=300.0):
        """Run `supervisorctl -c CONF WORDS...` in its own session; return
        (exit status, stdout).  The Popen is kept in self.ctl so that the
        cleanup can kill it by pid if a signal arrives meanwhile."""
        self.ctl = subprocess.Popen(
            [SUPERVISORCTL, "-c", self.conf] + list(words),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = self.ctl.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.ctl.kill()
            self.ctl.wait()
            self.ctl = None
            raise Fail("supervisorctl %s did not finish in %.0f s"
                       % (" ".join(words), timeout))
        rc = self.ctl.returncode
        self.ctl = None
        return rc, out.decode(errors="replace")

    def start_supervisord(self):
        n = self.args.workers
        # supervisord (with redirect_stderr) keeps 2 pipe ends per worker
        # (child's stdin and stdout) plus its sockets and log: raise our soft
        # limits to the hard ones so that it inherits enough, and fail
        # clearly if even the hard limit is too low.
        need_fds = 2 * n + 256
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY
                                               or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        if soft != resource.RLIM_INFINITY and soft < need_fds:
            raise Fail("RLIMIT_NOFILE hard limit %d is below the %d fds "
                       "supervisord needs for %d workers" % (hard, need_fds, n))
        psoft, phard = resource.getrlimit(resource.RLIMIT_NPROC)
        if psoft != resource.RLIM_INFINITY and (phard == resource.RLIM_INFINITY
                                                or psoft < phard):
            resource.setrlimit(resource.RLIMIT_NPROC, (phard, phard))
        # minfds/minprocs are only start-up minimums (supervisord raises its
        # soft limits to them, and refuses to start if the hard limit is
        # lower).  minfds is also how many fds each forked child closes one
        # by one (3..minfds) before exec.  Use supervisord's defaults (1024,
        # 200), lowered to the hard limits so that it never refuses to start.
        minfds = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
        minprocs = 200 if phard == resource.RLIM_INFINITY else min(200, phard)
        self.write_main_conf(minfds, minprocs)

        log("starting supervisord")
        self.sv_out = open(os.path.join(self.tmp, "supervisord.out"), "wb")
        self.sv = subprocess.Popen(
            [SUPERVISORD, "-c", self.conf, "-n"],
            stdin=subprocess.DEVNULL, stdout=self.sv_out,
            stderr=subprocess.STDOUT, start_new_session=True)
        st = proc_stat(self.sv.pid)
        self.sv_start = st[2] if st else None

        # Wait for the socket to accept XML-RPC and supervisord to be RUNNING.
        self.rpc = rpc_proxy(self.sock)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self.sv.poll() is not None:
                raise Fail("supervisord exited with status %d at start (see %s)"
                           % (self.sv.returncode,
                              os.path.join(self.tmp, "supervisord.out")))
            if os.path.exists(self.sock):
                try:
                    if self.rpc.supervisor.getState()["statecode"] == SV_RUNNING:
                        break
                except (OSError, http.client.HTTPException,
                        xmlrpc.client.Error):
                    self.rpc = rpc_proxy(self.sock)
            if time.monotonic() > deadline:
                raise Fail("supervisord's socket did not answer within %.0f s"
                           % STARTUP_TIMEOUT_S)
            time.sleep(0.02)
        log("supervisord pid %d is up" % self.sv.pid)

    @staticmethod
    def detect_poller():
        """Which poller supervisord's main loop uses (supervisor/poller.py
        prefers kqueue, then poll, then select)."""
        import select
        if hasattr(select, "kqueue"):
            return "kqueue"
        return "poll" if hasattr(select, "poll") else "select"

    def stop_workers_first(self):
        """`supervisorctl stop all` without waiting (XML-RPC
        stopAllProcesses(False): TERM to every worker in one go), then wait
        for the workers to be gone, polling getState.

        Why: on SIGTERM supervisord stops its groups one after another, one
        group per pass of its main loop, and a pass with no I/O event waits
        for poll()'s 1 s timeout; with one group per program, 1000 workers
        took minutes to stop.  The polling requests keep the loop turning
        while the workers are reaped."""
        try:
            rpc = rpc_proxy(self.sock)
            rpc.supervisor.stopAllProcesses(False)
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline:
                if not any((proc_stat(p) or (0, 0, -1))[2] == s
                           for p, s in self.seen.items()):
                    break
                rpc.supervisor.getState()
                time.sleep(0.05)
            rpc("close")()
        except Exception as e:
            log("stopAllProcesses failed (%r); relying on SIGTERM" % (e,))

    def stop_all(self):
        """Stop supervisord (it stops its workers), then make sure no process
        this script started is left.  Never raises."""
        # Ignore further INT/TERM during the cleanup itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        leftovers = []
        try:
            if self.ctl is not None:             # an interrupted supervisorctl
                try:
                    self.ctl.kill()
                    self.ctl.wait(5)
                except Exception:
                    pass
            if self.sv is not None and self.sv.poll() is None:
                # Learn every worker pid (an interrupted bring-up has not
                # recorded them yet), then stop them all at once.
                try:
                    rpc = rpc_proxy(self.sock)
                    for info in rpc.supervisor.getAllProcessInfo():
                        self.remember(info["pid"])
                    rpc("close")()
                except Exception as e:
                    log("getAllProcessInfo failed at cleanup: %r" % (e,))
                if self.seen:
                    self.stop_workers_first()
            if self.rpc is not None:
                try:
                    self.rpc("close")()
                except Exception:
                    pass
            if self.sv is not None and self.sv.poll() is None:
                log("stopping supervisord (SIGTERM)")
                try:
                    self.sv.send_signal(signal.SIGTERM)
                    # Workers exit on TERM at once; stopwaitsecs=5 bounds a
                    # stubborn one, so a minute is plenty even for 1000.
                    self.sv.wait(60)
                except subprocess.TimeoutExpired:
                    log("supervisord did not exit in 60 s: SIGKILL")
                    self.sv.kill()
                    self.sv.wait()
            # Every worker pid ever seen must be gone (same pid + starttime
            # means it is still our worker): kill any by pid.
            for pid, start in self.seen.items():
                st = proc_stat(pid)
                if st is not None and st[2] == start:
                    leftovers.append(pid)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            # Last resort: anything still in supervisord's session (workers
            # are in their own process groups, but in that session), started
            # after supervisord was.
            if self.sv is not None and self.sv_start is not None:
                sid = self.sv.pid
                try:
                    os.killpg(sid, signal.SIGKILL)
                except OSError:
                    pass
                for ent in os.listdir("/proc"):
                    if not ent.isdigit():
                        continue
                    st = proc_stat(int(ent))
                    if st and st[1] == sid and st[2] >= self.sv_start:
                        leftovers.append(int(ent))
                        try:
                            os.kill(int(ent), signal.SIGKILL)
                        except OSError:
                            pass
            if leftovers:
                log("killed %d leftover process(es) by pid: %s"
                    % (len(leftovers), sorted(set(leftovers))[:20]))
            # Final check: nothing we started is alive.
            time.sleep(0.05)
            remain = [p for p, s in self.seen.items()
                      if (proc_stat(p) or (0, 0, -1))[2] == s]
            if self.sv is not None and self.sv.poll() is None:
                remain.append(self.sv.pid)
            if remain:
                log("WARNING: still alive after cleanup: %s" % remain[:20])
            elif self.sv is not None:
                log("cleanup done: supervisord and all %d worker pids seen "
                    "are gone" % len(self.seen))
        except Exception as e:  # cleanup must not raise
            log("cleanup error: %r" % (e,))
        finally:
            if getattr(self, "sv_out", None):
                self.sv_out.close()

    # ---- lookups -----------------------------------------------------------

    def lookup(self, key):
        """key -> pid through the program API: one XML-RPC
        supervisor.getProcessInfo request on the persistent connection."""
        return self.rpc.supervisor.getProcessInfo(key)["pid"]

    def all_running(self, names):
        """getAllProcessInfo -> {name: pid} for those RUNNING with a live pid,
        restricted to names."""
        up = {}
        for info in self.rpc.supervisor.getAllProcessInfo():
            if (info["name"] in names and info["state"] == RUNNING
                    and info["pid"] and alive(info["pid"])):
                up[info["name"]] = info["pid"]
        return up

    # ---- workloads --------------------------------------------------------

    def bringup(self):
        n = self.args.workers
        log("writing %d program files into %s" % (n, self.confd))
        for key in self.keys:
            self.write_program(key)
        names = set(self.keys)
        log("timing `supervisorctl update` until all %d are RUNNING" % n)
        t0 = time.perf_counter()
        rc, out = self.supervisorctl("update", timeout=600.0)
        t_ctl = time.perf_counter()
        if rc != 0 or out.count("added process group") != n:
            raise Fail("supervisorctl update failed (rc %d): %s"
                       % (rc, out.strip().splitlines()[-1:]))
        polls = 0
        deadline = t_ctl + 600.0
        while True:
            up = self.all_running(names)
            polls += 1
            if len(up) == n:
                break
            if time.perf_counter() > deadline:
                raise Fail("only %d of %d workers RUNNING after 600 s"
                           % (len(up), n))
            time.sleep(0.01)
        t1 = time.perf_counter()
        self.pids = up
        # Untimed checks: each worker is supervisord's child, remember pids.
        for key, pid in up.items():
            self.remember(pid)
            st = proc_stat(pid)
            if st is None or st[0] != self.sv.pid:
                raise Fail("worker %s pid %d is not supervisord's child"
                           % (key, pid))
        log("bring-up: %.1f ms (update itself %.1f ms, %d polls)"
            % ((t1 - t0) * 1e3, (t_ctl - t0) * 1e3, polls))
        emit("bringup_ms", (t1 - t0) * 1e3,
             "from launching `supervisorctl -c CONF update` (N program files "
             "conf.d/wNNNN.conf, one [program:] each, written beforehand; "
             "update = XML-RPC reloadConfig + one addProcessGroup per program) "
             "until XML-RPC getAllProcessInfo, polled every 10 ms once update "
             "had returned, showed all N RUNNING with a live pid; update "
             "itself took %.1f ms; %d polls; startsecs=0 so RUNNING follows "
             "the spawn on the next loop pass" % ((t_ctl - t0) * 1e3, polls))

    def lookup_program(self):
        count = min(self.args.lookups, LOOKUP_CAP)
        log("timing %d XML-RPC getProcessInfo lookups" % count)
        rng = random.Random(2)
        keys = [rng.choice(self.keys) for _ in range(count)]
        bad = 0
        done = 0
        t0 = time.perf_counter()
        budget_end = t0 + LOOKUP_BUDGET_S
        for key in keys:
            if self.lookup(key) != self.pids[key]:
                bad += 1
            done += 1
            if (done & 63) == 0 and time.perf_counter() > budget_end:
                break
        t1 = time.perf_counter()
        if bad:
            raise Fail("%d of %d XML-RPC lookups returned a wrong pid"
                       % (bad, done))
        mean_us = (t1 - t0) * 1e6 / done
        log("lookup_program: %.1f us mean over %d" % (mean_us, done))
        capped = []
        if count < self.args.lookups:
            capped.append("capped from %d to %d" % (self.args.lookups, count))
        if done < count:
            capped.append("stopped by the %.0f s time budget"
                          % LOOKUP_BUDGET_S)
        emit("lookup_program_us", mean_us,
             "mean over %d lookups of random keys (%s): Python "
             "xmlrpc.client.ServerProxy, one supervisor.getProcessInfo(key) "
             "request per lookup over one persistent HTTP/1.1 connection to "
             "the Unix socket (stdlib transport equivalent to supervisor's "
             "SupervisorTransport); every pid checked"
             % (done, "; ".join(capped) or "not capped"))

    def lookup_shell(self):
        runs = self.args.shell_runs
        log("timing %d runs of `supervisorctl pid KEY`" % runs)
        rng = random.Random(3)
        times = []
        for _ in range(runs):
            key = rng.choice(self.keys)
            t0 = time.perf_counter()
            rc, out = self.supervisorctl("pid", key, timeout=60.0)
            t1 = time.perf_counter()
            if rc != 0 or out.strip() != str(self.pids[key]):
                raise Fail("`supervisorctl pid %s` printed %r (rc %d), "
                           "expected %d" % (key, out.strip(), rc,
                                            self.pids[key]))
            times.append((t1 - t0) * 1e6)
        med = statistics.median(times)
        log("lookup_shell: %.0f us median" % med)
        emit("lookup_shell_us", med,
             "median over %d runs (random keys, output checked) of the wall "
             "time of one whole `supervisorctl -c CONF pid KEY` process "
             "(Popen, Python start-up, XML-RPC getProcessInfo over the Unix "
             "socket, exit, wait); min %.0f us, max %.0f us"
             % (runs, min(times), max(times)))

    def restarts(self):
        c = self.args.crashes
        rng = random.Random(4)
        order = list(self.keys)
        rng.shuffle(order)
        log("timing %d SIGKILL restarts (round-robin over shuffled keys)" % c)
        lat = []
        lost = 0
        polls_total = 0
        for i in range(c):
            key = order[i % len(order)]
            old = self.lookup(key)
            if old != self.pids[key] or not alive(old):
                raise Fail("%s: pid %r before the kill, expected %d"
                           % (key, old, self.pids[key]))
            t0 = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            deadline = t0 + CRASH_TIMEOUT_S
            # Spin on the program API, as the C peers spin on theirs.
            while True:
                pid = self.lookup(key)
                polls_total += 1
                if pid and pid != old and alive(pid):
                    t1 = time.perf_counter()
                    lat.append((t1 - t0) * 1e6)
                    self.pids[key] = pid
                    self.remember(pid)
                    break
                if time.perf_counter() > deadline:
                    lost += 1
                    log("restart of %s not seen within %.0f s"
                        % (key, CRASH_TIMEOUT_S))
                    # Wait for it to come back so later lookups are right.
                    self.pids[key] = self.wait_running(key, 60.0)
                    break
        if not lat:
            raise Fail("no restart was seen")
        lat.sort()
        p50 = nearest_rank(lat, 0.50)
        p99 = nearest_rank(lat, 0.99)
        log("restart: p50 %.0f us, p99 %.0f us, max %.0f us, lost %d"
            % (p50, p99, lat[-1], lost))
        idle = self.idle_restarts(order, c)
        how = ("SIGKILL a worker's pid, then spin on XML-RPC "
               "getProcessInfo(key) (one request after another, no sleep) "
               "until it returns a new pid with kill(pid,0)==0; the next kill "
               "only after that; round-robin over shuffled keys; "
               "autorestart=true startsecs=0 startretries=1000000 (no "
               "backoff). Caveat: each polling request wakes supervisord's "
               "poll() loop, which otherwise sleeps up to 1 s; the respawn "
               "happens on the loop pass after the one that reaps the "
               "worker. With no requests (an idle supervisord, the new child "
               "watched from /proc only, untimed extra crashes) the new "
               "worker appeared after: %s ms"
               % ", ".join("%.0f" % (x / 1e3) for x in idle))
        emit("restart_p50_us", p50, how)
        emit("restart_p99_us", p99, "nearest-rank p99 over %d crashes"
             % len(lat))
        emit("restart_max_us", lat[-1], "max over %d crashes; %.1f lookups "
             "per crash on average" % (len(lat), polls_total / c))
        emit("restart_n", len(lat), "%d crashes timed, %d not seen within "
             "%.0f s (lost)" % (len(lat), lost, CRASH_TIMEOUT_S))

    def idle_restarts(self, order, start, count=3):
        """Restart latency seen WITHOUT talking to supervisord (extra keys,
        not part of the timed set): SIGKILL, then watch /proc (readdir only,
        which supervisord does not notice) for a new child of supervisord.
        Returns the latencies in us (resolution ~ the 2 ms scan sleep)."""
        sv = self.sv.pid
        out = []
        for j in range(count):
            key = order[(start + j) % len(order)]
            old = self.lookup(key)
            time.sleep(0.3)           # let the loop settle into its poll()
            known = set(os.listdir("/proc"))
            t0 = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            new = None
            while new is None and time.perf_counter() - t0 < CRASH_TIMEOUT_S:
                for ent in os.listdir("/proc"):
                    if ent in known or not ent.isdigit():
                        continue
                    known.add(ent)
                    st = proc_stat(int(ent))
                    if st is not None and st[0] == sv:
                        new = int(ent)
                        break
                else:
                    time.sleep(0.002)
            t1 = time.perf_counter()
            if new is None:
                log("idle restart of %s not seen in /proc" % key)
            else:
                out.append((t1 - t0) * 1e6)
                self.remember(new)
            # Untimed: wait until the API shows it, to keep self.pids right.
            pid = self.wait_running(key, 60.0)
            if new is not None and pid != new:
                raise Fail("idle restart of %s: /proc showed pid %d, "
                           "supervisord says %d" % (key, new, pid))
            self.pids[key] = pid
            self.remember(pid)
        log("idle restarts (no requests): %s ms"
            % ", ".join("%.0f" % (x / 1e3) for x in out))
        return out

    def wait_running(self, name, timeout):
        """Poll getProcessInfo(name) until RUNNING with a live pid."""
        deadline = time.perf_counter() + timeout
        while True:
            try:
                info = self.rpc.supervisor.getProcessInfo(name)
            except xmlrpc.client.Fault as e:
                if e.faultCode != BAD_NAME:
                    raise
                info = None
            if (info and info["state"] == RUNNING and info["pid"]
                    and alive(info["pid"])):
                return info["pid"]
            if time.perf_counter() > deadline:
                raise Fail("%s not RUNNING within %.0f s" % (name, timeout))

    def add_worker(self):
        log("timing adds of `extra` (write conf.d/extra.conf + "
            "supervisorctl update)")
        extra = os.path.join(self.confd, "extra.conf")
        times = []
        ctl_times = []
        runs = ADD_RUNS
        i = 0
        while i < runs:
            self.write_program("extra")
            t0 = time.perf_counter()
            rc, out = self.supervisorctl("update", timeout=300.0)
            t_ctl = time.perf_counter()
            if rc != 0 or "extra: added process group" not in out:
                raise Fail("supervisorctl update (add extra) failed: rc %d %r"
                           % (rc, out.strip()[-200:]))
            pid = self.wait_running("extra", 60.0)
            t1 = time.perf_counter()
            self.remember(pid)
            st = proc_stat(pid)
            if st is None or st[0] != self.sv.pid:
                raise Fail("extra pid %d is not supervisord's child" % pid)
            times.append((t1 - t0) * 1e3)
            ctl_times.append((t_ctl - t0) * 1e3)
            # Remove it again (untimed): delete the file + update, which
            # stops (TERM) and removes the group.
            os.unlink(extra)
            rc, out = self.supervisorctl("update", timeout=300.0)
            if rc != 0 or "extra: removed process group" not in out:
                raise Fail("supervisorctl update (remove extra) failed: "
                           "rc %d %r" % (rc, out.strip()[-200:]))
            try:
                self.rpc.supervisor.getProcessInfo("extra")
                raise Fail("extra still known after its removal")
            except xmlrpc.client.Fault as e:
                if e.faultCode != BAD_NAME:
                    raise
            if alive(pid):
                time.sleep(0.1)
                if alive(pid) and proc_stat(pid):
                    raise Fail("extra pid %d still alive after removal" % pid)
            i += 1
            # An add costs a full reloadConfig; keep the whole thing bounded.
            if i == 1 and times[0] > 10000:
                runs = 3
        med = statistics.median(times)
        log("add_worker: %.1f ms median over %d" % (med, len(times)))
        emit("add_worker_ms", med,
             "median of %d adds: write conf.d/extra.conf ([program:extra], "
             "same settings), then time from launching `supervisorctl -c "
             "CONF update` (reloadConfig re-reads all N+1 include files, "
             "then addProcessGroup extra) until getProcessInfo('extra'), "
             "polled back to back once update returned, is RUNNING with a "
             "live pid; update itself took %.1f ms median; removed between "
             "runs by deleting the file + update (untimed)"
             % (len(times), statistics.median(ctl_times)))

    def memory(self):
        pss, rss = smaps_rollup(self.sv.pid)
        log("memory: Pss %d KiB, Rss %d KiB" % (pss, rss))
        emit("mem_kib", pss,
             "Pss of the one supervisord process (CPython) from "
             "/proc/PID/smaps_rollup with %d workers running, after the other "
             "workloads; workers not counted" % self.args.workers)
        emit("mem_procs", 1, "supervisord is one process (workers are its "
             "children, not counted)")
        emit("rss_main_kib", rss, "Rss of supervisord")

    # ---- the run ------------------------------------------------------------

    def version(self):
        out = subprocess.run([SUPERVISORD, "--version"], capture_output=True,
                             text=True, timeout=30, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        v = out.stdout.strip()
        if out.returncode != 0 or not v:
            raise Fail("`supervisord --version` failed: %s"
                       % out.stderr.strip()[-200:])
        py = subprocess.run(["/usr/bin/python3", "--version"],
                            capture_output=True, text=True, timeout=30,
                            start_new_session=True).stdout.strip()
        return "supervisord %s (%s)" % (v, py)

    def run(self):
        a = self.args
        if not os.access(self.worker, os.X_OK):
            raise Fail("worker %s is not executable" % self.worker)
        for exe in (SUPERVISORD, SUPERVISORCTL):
            if not os.access(exe, os.X_OK):
                raise Fail("%s not found (apt-get install supervisor)" % exe)
        if len(self.sock.encode()) > 100:
            raise Fail("--tmp path too long for a Unix socket: %s" % self.sock)
        os.makedirs(self.confd, exist_ok=True)
        ver = self.version()
        emit("version", None, ver + "; Debian package supervisor; config: "
             "one file per program in an [include] dir, startsecs=0 "
             "autorestart=true startretries=1000000 redirect_stderr=true "
             "stdout_logfile=NONE (supervisord reads and discards the "
             "worker's one output pipe; no log file per worker) "
             "stopsignal=TERM stopwaitsecs=5, loglevel=info, "
             "minfds=1024 minprocs=200 (supervisord's defaults, capped at the "
             "hard rlimits; soft NOFILE/NPROC raised to the hard ones "
             "beforehand so N workers' pipes fit); the worker is the "
             "program's command, fork+exec'd directly by supervisord "
             "(no shell); supervisord's main loop: %s() with a 1 s timeout"
             % self.detect_poller())
        self.start_supervisord()
        self.bringup()
        self.lookup_program()
        self.lookup_shell()
        self.restarts()
        self.add_worker()
        self.memory()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--crashes", type=int, default=20)
    p.add_argument("--shell-runs", type=int, default=50)
    p.add_argument("--lookups", type=int, default=100000)
    p.add_argument("--worker", default=None)
    p.add_argument("--tmp", required=True)
    p.add_argument("--build", default=None,
                   help="keyvisor build dir (only used to find the worker)")
    args = p.parse_args()
    if args.worker is None:
        build = args.build or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
            "build")
        args.worker = os.path.join(build, "tests", "bench", "bench-worker")
    if args.workers < 1 or args.crashes < 1 or args.shell_runs < 1 \
            or args.lookups < 1:
        print("peer_supervisord: error: counts must be >= 1", file=sys.stderr)
        return 2

    bench = Bench(args)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    status = 0
    try:
        bench.run()
    except Interrupted as e:
        print("peer_supervisord: error: interrupted by %s" % e,
              file=sys.stderr)
        status = 128 + e.signum
    except Fail as e:
        print("peer_supervisord: error: %s" % e, file=sys.stderr)
        status = 1
    except Exception as e:
        print("peer_supervisord: error: %s: %s" % (type(e).__name__, e),
              file=sys.stderr)
        status = 1
    finally:
        bench.stop_all()
    return status


if __name__ == "__main__":
    sys.exit(main())
