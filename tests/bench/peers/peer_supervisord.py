#!/usr/bin/env python3
"""supervisord's side of the peer comparison (see README.md in this folder).

    python3 peer_supervisord.py --workers N --crashes C --shell-runs R \
        --lookups L --worker PATH --tmp DIR [--build BUILDDIR]

Drives a private supervisord (Debian package `supervisor`, 4.2.5) through
the workloads of the contract: bring-up of N keyed workers, restart latency
after SIGKILL, key -> pid lookups from the shell and from a program, adding
one worker at run time, and supervisord's own memory. Prints one JSON
object per line on stdout; progress goes to stderr.

The XML-RPC client is xmlrpc.client over a tiny Unix-socket transport
written here (equivalent to the supervisor.xmlrpc.SupervisorTransport that
supervisor ships: one persistent HTTP/1.1 connection to the server's
socket, one request per call).
"""

import http.client
import os
import random
import resource
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import peerlib  # noqa: E402
from peerlib import Failure, emit, log, median  # noqa: E402

SUPERVISORD = "/usr/bin/supervisord"
SUPERVISORCTL = "/usr/bin/supervisorctl"

# supervisord's process state code for RUNNING (supervisor/states.py).
RUNNING = 20
# supervisord's own state code for "running" (SupervisorStates.RUNNING).
SV_RUNNING = 1
# xmlrpc Faults.BAD_NAME: no such process or group.
BAD_NAME = 10

# The program API (XML-RPC) is slow, so its lookup count is capped (the
# contract allows ~2000) and time-boxed; the note says what was done.
LOOKUP_CAP = 2000
LOOKUP_BUDGET_S = 60.0
ADD_RUNS = 5  # adds of `extra` (median); 3 if the first is over 10 s
CRASH_TIMEOUT_S = 10.0  # a restart not seen within this is counted as lost
STARTUP_TIMEOUT_S = 30.0


# -- XML-RPC over supervisord's Unix socket ---------------------------------


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


def ini_value(s):
    """supervisord expands %(name)s in values: escape '%'."""
    return str(s).replace("%", "%%")


# -- the peer ---------------------------------------------------------------


class Supervisord(peerlib.Peer):
    """A private supervisord, its config, supervisorctl and XML-RPC."""

    name = "supervisord"
    install = "apt-get install supervisor"

    def __init__(self, args):
        super().__init__(args)
        for path in (SUPERVISORD, SUPERVISORCTL):
            if not os.access(path, os.X_OK):
                raise Failure(f"{path} not found ({self.install})")
        self.conf = self.tmp / "supervisord.conf"
        self.confd = self.tmp / "conf.d"
        self.confd.mkdir()
        self.sock = self.tmp / "supervisor.sock"
        if len(str(self.sock).encode()) > 100:
            raise Failure(f"--tmp path too long for a Unix socket: "
                          f"{self.sock}")
        self.sv = None  # Popen of supervisord
        self.sv_out = None
        self.rpc = None
        self.pids = {}  # key -> current pid

    # -- configuration ------------------------------------------------------

    def write_main_conf(self, minfds, minprocs):
        self.conf.write_text(f"""\
; Private supervisord for the keyvisor peer benchmark (peer_supervisord.py).
[unix_http_server]
file={ini_value(self.sock)}
chmod=0700

[supervisord]
nodaemon=true
silent=true
logfile={ini_value(self.tmp / "supervisord.log")}
pidfile={ini_value(self.tmp / "supervisord.pid")}
childlogdir={ini_value(self.tmp)}
loglevel=info
minfds={minfds}
minprocs={minprocs}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{ini_value(self.sock)}

[include]
files={ini_value(self.confd)}/*.conf
""")

    def write_program(self, name):
        """conf.d/NAME.conf, one [program:NAME] running the worker directly
        (supervisord fork+execs the command line it split with shlex; no
        shell). Written atomically: the temporary name does not match the
        include glob *.conf."""
        path = self.confd / f"{name}.conf"
        tmp = self.confd / f"{name}.conf.tmp"
        tmp.write_text(f"""\
[program:{name}]
command={ini_value(shlex.quote(str(self.worker)))}
autostart=true
autorestart=true
startsecs=0
startretries=1000000
redirect_stderr=true
stdout_logfile=NONE
stopsignal=TERM
stopwaitsecs=5
""")
        os.rename(tmp, path)

    # -- processes ----------------------------------------------------------

    def supervisorctl(self, *words, timeout=300):
        """`supervisorctl -c CONF WORDS...` as a whole process, timed
        (peerlib.time_command); a Timed with stdout and stderr together."""
        r = peerlib.time_command([SUPERVISORCTL, "-c", str(self.conf),
                                  *words], timeout=timeout)
        return r._replace(out=r.out + r.err)

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
            raise Failure(f"RLIMIT_NOFILE hard limit {hard} is below the "
                          f"{need_fds} fds supervisord needs for {n} workers")
        psoft, phard = resource.getrlimit(resource.RLIMIT_NPROC)
        if psoft != resource.RLIM_INFINITY and (phard == resource.RLIM_INFINITY
                                                or psoft < phard):
            resource.setrlimit(resource.RLIMIT_NPROC, (phard, phard))
        # minfds/minprocs are only start-up minimums (supervisord raises its
        # soft limits to them, and refuses to start if the hard limit is
        # lower). minfds is also how many fds each forked child closes one
        # by one (3..minfds) before exec. Use supervisord's defaults (1024,
        # 200), lowered to the hard limits so that it never refuses to start.
        minfds = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
        minprocs = 200 if phard == resource.RLIM_INFINITY else min(200, phard)
        self.write_main_conf(minfds, minprocs)

        log("starting supervisord")
        self.sv_out = open(self.tmp / "supervisord.out", "wb")
        self.sv = subprocess.Popen(
            [SUPERVISORD, "-c", str(self.conf), "-n"],
            stdin=subprocess.DEVNULL, stdout=self.sv_out,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.add(self.sv.pid, "supervisord")
        # Wait for the socket to accept XML-RPC and supervisord to be RUNNING.
        self.rpc = rpc_proxy(str(self.sock))
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self.sv.poll() is not None:
                raise Failure(f"supervisord exited with status "
                              f"{self.sv.returncode} at start (see "
                              f"{self.tmp / 'supervisord.out'})")
            if self.sock.exists():
                try:
                    if self.rpc.supervisor.getState()["statecode"] \
                            == SV_RUNNING:
                        break
                except (OSError, http.client.HTTPException,
                        xmlrpc.client.Error):
                    self.rpc = rpc_proxy(str(self.sock))
            if time.monotonic() > deadline:
                raise Failure(f"supervisord's socket did not answer within "
                              f"{STARTUP_TIMEOUT_S:.0f} s")
            time.sleep(0.02)
        log(f"supervisord pid {self.sv.pid} is up")

    def stop_workers_first(self):
        """`supervisorctl stop all` without waiting (XML-RPC
        stopAllProcesses(False): TERM to every worker in one go), then wait
        for the workers to be gone, polling getState.

        Why: on SIGTERM supervisord stops its groups one after another, one
        group per pass of its main loop, and a pass with no I/O event waits
        for poll()'s 1 s timeout; with one group per program, 1000 workers
        took minutes to stop. The polling requests keep the loop turning
        while the workers are reaped."""
        try:
            rpc = rpc_proxy(str(self.sock))
            for info in rpc.supervisor.getAllProcessInfo():
                self.procs.add(info["pid"])  # an interrupted bring-up's too
            rpc.supervisor.stopAllProcesses(False)
            deadline = time.monotonic() + 30.0
            while self.procs.live(what="worker") \
                    and time.monotonic() < deadline:
                rpc.supervisor.getState()
                time.sleep(0.05)
            rpc("close")()
        except Exception as e:  # noqa: BLE001 (SIGTERM does it, slower)
            log(f"stopAllProcesses failed ({e!r}); relying on SIGTERM")

    def stop(self):
        """Stop the workers, then supervisord (SIGTERM, wait, KILL), then
        whatever seen is left, by pid, and supervisord's process group."""
        if self.sv is None:
            return []
        if self.sv.poll() is None:
            self.stop_workers_first()
            if self.rpc is not None:
                try:
                    self.rpc("close")()
                except (OSError, http.client.HTTPException):
                    pass
            log("stopping supervisord (SIGTERM)")
            self.sv.send_signal(signal.SIGTERM)
            # Workers exit on TERM at once; stopwaitsecs=5 bounds a stubborn
            # one, so a minute is plenty even for 1000.
            peerlib.wait_or_kill(self.sv, "supervisord")
        _, left = self.procs.sweep(5, "supervisord")
        # Last resort: the workers are in supervisord's session but in
        # process groups of their own; anything left in its own group.
        if peerlib.kill_group(self.sv.pid):
            log("processes left in supervisord's group: killed")
        if not left:
            log(f"cleanup done: supervisord and all "
                f"{len(self.procs.procs) - 1} worker pids seen are gone")
        self.sv_out.close()
        self.sv = None
        return left

    # -- lookups ------------------------------------------------------------

    def lookup(self, key):
        """key -> pid through the program API: one XML-RPC
        supervisor.getProcessInfo request on the persistent connection."""
        return self.rpc.supervisor.getProcessInfo(key)["pid"]

    def all_running(self, names):
        """getAllProcessInfo -> {name: pid} of NAMES RUNNING with a live
        pid."""
        return {info["name"]: info["pid"]
                for info in self.rpc.supervisor.getAllProcessInfo()
                if info["name"] in names and info["state"] == RUNNING
                and info["pid"] and peerlib.alive(info["pid"])}

    def wait_running(self, name, timeout):
        """Poll getProcessInfo(name), back to back, until RUNNING with a
        live pid; the pid."""
        deadline = time.perf_counter() + timeout
        while True:
            try:
                info = self.rpc.supervisor.getProcessInfo(name)
            except xmlrpc.client.Fault as e:
                if e.faultCode != BAD_NAME:
                    raise
                info = None
            if (info and info["state"] == RUNNING and info["pid"]
                    and peerlib.alive(info["pid"])):
                return info["pid"]
            if time.perf_counter() > deadline:
                raise Failure(f"{name} not RUNNING within {timeout:.0f} s")

    def check_child(self, key, pid):
        """PID is supervisord's child; track it."""
        st = peerlib.proc_stat(pid)
        if st is None or st.ppid != self.sv.pid:
            raise Failure(f"{key}'s pid {pid} is not supervisord's child")
        self.procs.add(pid)

    # -- the workloads ------------------------------------------------------

    def bringup(self):
        n = self.args.workers
        log(f"writing {n} program files into {self.confd}")
        for key in self.keys:
            self.write_program(key)
        names = set(self.keys)
        log(f"timing `supervisorctl update` until all {n} are RUNNING")
        t0 = time.perf_counter()
        r = self.supervisorctl("update", timeout=600)
        t_ctl = time.perf_counter()
        if r.rc != 0 or r.out.count("added process group") != n:
            raise Failure(f"supervisorctl update failed (rc {r.rc}): "
                          f"{r.out.strip().splitlines()[-1:]}")
        polls = 0
        while True:
            up = self.all_running(names)
            polls += 1
            if len(up) == n:
                break
            if time.perf_counter() > t_ctl + 600:
                raise Failure(f"only {len(up)} of {n} workers RUNNING after "
                              "600 s")
            time.sleep(0.01)
        t1 = time.perf_counter()
        self.pids = up
        for key, pid in up.items():  # untimed
            self.check_child(key, pid)
        log(f"bring-up: {(t1 - t0) * 1e3:.1f} ms (update itself "
            f"{(t_ctl - t0) * 1e3:.1f} ms, {polls} polls)")
        emit("bringup_ms", (t1 - t0) * 1e3,
             "from launching `supervisorctl -c CONF update` (N program files "
             "conf.d/wNNNN.conf, one [program:] each, written beforehand; "
             "update = XML-RPC reloadConfig + one addProcessGroup per "
             "program) until XML-RPC getAllProcessInfo, polled every 10 ms "
             "once update had returned, showed all N RUNNING with a live "
             f"pid; update itself took {(t_ctl - t0) * 1e3:.1f} ms; {polls} "
             "polls; startsecs=0 so RUNNING follows the spawn on the next "
             "loop pass")

    def lookup_program(self):
        count = min(self.args.lookups, LOOKUP_CAP)
        log(f"timing {count} XML-RPC getProcessInfo lookups")
        rnd = random.Random(peerlib.SEED)
        keys = [rnd.choice(self.keys) for _ in range(count)]
        bad = done = 0
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
            raise Failure(f"{bad} of {done} XML-RPC lookups returned a "
                          "wrong pid")
        mean_us = (t1 - t0) * 1e6 / done
        log(f"program lookup: {mean_us:.1f} us mean over {done}")
        capped = []
        if count < self.args.lookups:
            capped.append(f"capped from {self.args.lookups} to {count}")
        if done < count:
            capped.append(f"stopped by the {LOOKUP_BUDGET_S:.0f} s time "
                          "budget")
        emit("lookup_program_us", mean_us,
             f"mean over {done} lookups of random keys "
             f"({'; '.join(capped) or 'not capped'}): Python "
             "xmlrpc.client.ServerProxy, one supervisor.getProcessInfo(key) "
             "request per lookup over one persistent HTTP/1.1 connection to "
             "the Unix socket (stdlib transport equivalent to supervisor's "
             "SupervisorTransport); every pid checked")

    def lookup_shell(self):
        runs = self.args.shell_runs
        log(f"timing {runs} runs of `supervisorctl pid KEY`")
        times = peerlib.time_shell_lookups(
            runs, self.keys,
            lambda k: [SUPERVISORCTL, "-c", str(self.conf), "pid", k],
            self.pids)
        emit("lookup_shell_us", median(times),
             f"median of {runs} runs over random keys, each timed around "
             "the whole process (peerlib.time_command): `supervisorctl -c "
             "CONF pid KEY` (Python start-up, XML-RPC getProcessInfo over "
             "the Unix socket, exit, wait); output checked; min "
             f"{min(times):.0f} us, max {max(times):.0f} us")

    def restarts(self):
        c = self.args.crashes
        order = list(self.keys)
        random.Random(peerlib.SEED).shuffle(order)
        log(f"timing {c} SIGKILL restarts (round-robin over shuffled keys)")
        lat, lost, polls = [], 0, 0
        for i in range(c):
            key = order[i % len(order)]
            old = self.lookup(key)
            if old != self.pids[key] or not peerlib.alive(old):
                raise Failure(f"{key}: pid {old} before the kill, expected "
                              f"{self.pids[key]}")
            t0 = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            deadline = t0 + CRASH_TIMEOUT_S
            # Spin on the program API, as the C probes spin on theirs.
            while True:
                pid = self.lookup(key)
                polls += 1
                if pid and pid != old and peerlib.alive(pid):
                    lat.append((time.perf_counter() - t0) * 1e6)
                    self.pids[key] = pid
                    self.procs.add(pid)
                    break
                if time.perf_counter() > deadline:
                    lost += 1
                    log(f"restart of {key} not seen within "
                        f"{CRASH_TIMEOUT_S:.0f} s")
                    # Wait for it to come back so later lookups are right.
                    self.pids[key] = self.wait_running(key, 60)
                    break
        idle = self.idle_restarts(order, c)
        peerlib.emit_restarts(
            lat, lost,
            "SIGKILL a worker's pid, then spin on XML-RPC "
            "getProcessInfo(key) (one request after another, no sleep) "
            "until it returns a new pid with kill(pid,0)==0; the next kill "
            "only after that; round-robin over shuffled keys; "
            "autorestart=true startsecs=0 startretries=1000000 (no backoff); "
            f"{polls / c:.1f} lookups per crash on average. Caveat: each "
            "polling request wakes supervisord's poll() loop, which "
            "otherwise sleeps up to 1 s; the respawn happens on the loop "
            "pass after the one that reaps the worker. With no requests (an "
            "idle supervisord, the new child watched from /proc only, "
            "untimed extra crashes) the new worker appeared after: "
            + ", ".join(f"{x / 1e3:.0f}" for x in idle) + " ms")

    def idle_restarts(self, order, start, count=3):
        """Restart latency seen WITHOUT talking to supervisord (extra keys,
        not part of the timed set): SIGKILL, then watch /proc (readdir only,
        which supervisord does not notice) for a new child of supervisord.
        Returns the latencies in us (resolution ~ the 2 ms scan sleep)."""
        out = []
        for j in range(count):
            key = order[(start + j) % len(order)]
            old = self.lookup(key)
            time.sleep(0.3)  # let the loop settle into its poll()
            known = set(os.listdir("/proc"))
            t0 = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            new = None
            while new is None and time.perf_counter() - t0 < CRASH_TIMEOUT_S:
                for ent in os.listdir("/proc"):
                    if ent in known or not ent.isdigit():
                        continue
                    known.add(ent)
                    st = peerlib.proc_stat(int(ent))
                    if st is not None and st.ppid == self.sv.pid:
                        new = int(ent)
                        break
                else:
                    time.sleep(0.002)
            t1 = time.perf_counter()
            if new is None:
                log(f"idle restart of {key} not seen in /proc")
            else:
                out.append((t1 - t0) * 1e6)
                self.procs.add(new)
            # Untimed: wait until the API shows it, to keep self.pids right.
            pid = self.wait_running(key, 60)
            if new is not None and pid != new:
                raise Failure(f"idle restart of {key}: /proc showed pid "
                              f"{new}, supervisord says {pid}")
            self.pids[key] = pid
            self.procs.add(pid)
        log("idle restarts (no requests): "
            + ", ".join(f"{x / 1e3:.0f}" for x in out) + " ms")
        return out

    def time_adds(self, metric, add, how):
        """Workload 4 one way: ADD() adds `extra`, its file written already
        (untimed), and returns when it has. Timed from before ADD until
        getProcessInfo('extra'), polled back to back, is RUNNING with a live
        pid; then `extra` is removed through the API (untimed: its file
        deleted, reloadConfig, stopProcessGroup, removeProcessGroup, as
        `supervisorctl update` does). ADD_RUNS times, 3 if the first took
        over 10 s. Emits METRIC, its note HOW(ADD's own median ms) and
        the runs."""
        times, own = [], []
        runs = ADD_RUNS
        while len(times) < runs:
            self.write_program("extra")
            t0 = time.perf_counter()
            t_add = add()
            pid = self.wait_running("extra", 60)
            t1 = time.perf_counter()
            self.check_child("extra", pid)
            times.append((t1 - t0) * 1e3)
            own.append((t_add - t0) * 1e3)
            os.unlink(self.confd / "extra.conf")
            self.rpc.supervisor.reloadConfig()
            self.rpc.supervisor.stopProcessGroup("extra")
            self.rpc.supervisor.removeProcessGroup("extra")
            if self.procs.wait_gone(5, [pid]):
                raise Failure(f"extra's pid {pid} still alive after its "
                              "removal")
            # An add costs a full reloadConfig; keep the whole thing bounded.
            if len(times) == 1 and times[0] > 10000:
                runs = 3
        emit(metric, median(times),
             f"median of {len(times)} adds, with {self.args.workers} "
             "running: write conf.d/extra.conf ([program:extra], same "
             f"settings; untimed), then {how(median(own))}, until "
             "getProcessInfo('extra'), polled back to back, is RUNNING with "
             "a live pid; removed between runs (untimed: the file deleted, "
             "then reloadConfig, stopProcessGroup, removeProcessGroup over "
             "XML-RPC). " + peerlib.runs_note(times, "{:.0f}"))
        log(f"{metric}: {median(times):.1f} ms")

    def add_worker(self):
        """From the shell: supervisorctl update."""
        def add():
            r = self.supervisorctl("update")
            if r.rc != 0 or "extra: added process group" not in r.out:
                raise Failure(f"supervisorctl update (add extra) failed: rc "
                              f"{r.rc} {r.out.strip()[-200:]!r}")
            return time.perf_counter()

        self.time_adds(
            "add_worker_ms", add, lambda ms:
            "time from launching `supervisorctl -c CONF update` "
            "(reloadConfig re-reads all N+1 include files, then "
            f"addProcessGroup extra; update itself took {ms:.1f} ms median)")

    def add_worker_api(self):
        """From a program: the XML-RPC calls `supervisorctl update` makes,
        on the connection of the lookups."""
        def add():
            added = self.rpc.supervisor.reloadConfig()[0][0]
            if added != ["extra"]:
                raise Failure(f"reloadConfig: added {added}, not extra")
            self.rpc.supervisor.addProcessGroup("extra")
            return time.perf_counter()

        self.time_adds(
            "add_worker_api_ms", add, lambda ms:
            "time from Python, over the XML-RPC connection of the lookups, "
            "supervisor.reloadConfig() (re-reads all N+1 include files) and "
            "supervisor.addProcessGroup('extra'), as `supervisorctl update` "
            f"does (the two calls took {ms:.1f} ms median)")

    def memory(self):
        peerlib.emit_memory(
            [self.sv.pid],
            "Pss of the one supervisord process (CPython) from "
            f"/proc/PID/smaps_rollup with {self.args.workers} workers "
            "running, after the other workloads; workers not counted",
            "supervisord is one process (workers are its children, not "
            "counted)")

    def version(self):
        out = subprocess.run([SUPERVISORD, "--version"], capture_output=True,
                             text=True, timeout=30, stdin=subprocess.DEVNULL)
        v = out.stdout.strip()
        if out.returncode != 0 or not v:
            raise Failure(f"`supervisord --version` failed: "
                          f"{out.stderr.strip()[-200:]}")
        py = subprocess.run(["/usr/bin/python3", "--version"],
                            capture_output=True, text=True,
                            timeout=30).stdout.strip()
        # supervisor/poller.py prefers kqueue, then poll, then select.
        poller = ("kqueue" if hasattr(select, "kqueue") else
                  "poll" if hasattr(select, "poll") else "select")
        return (f"supervisord {v} ({py}); Debian package supervisor; "
                "config: one file per program in an [include] dir, "
                "startsecs=0 autorestart=true startretries=1000000 "
                "redirect_stderr=true stdout_logfile=NONE (supervisord reads "
                "and discards the worker's one output pipe; no log file per "
                "worker) stopsignal=TERM stopwaitsecs=5, loglevel=info, "
                "minfds=1024 minprocs=200 (supervisord's defaults, capped at "
                "the hard rlimits; soft NOFILE/NPROC raised to the hard ones "
                "beforehand so N workers' pipes fit); the worker is the "
                "program's command, fork+exec'd directly by supervisord (no "
                f"shell); supervisord's main loop: {poller}() with a 1 s "
                "timeout")

    def run(self):
        emit("version", None, self.version())
        self.start_supervisord()
        self.bringup()
        self.lookup_program()
        self.lookup_shell()
        self.restarts()
        self.add_worker()
        self.add_worker_api()
        self.memory()


if __name__ == "__main__":
    sys.exit(peerlib.main(Supervisord))
