#!/usr/bin/env python3
"""keyvisor's side of the peer comparison (see README.md in this folder).

    python3 peer_keyvisor.py --workers N --crashes C --shell-runs R \
        --lookups L --worker PATH --tmp DIR [--build BUILDDIR]

Starts a private keyvisord (its own instance name, its own control socket
in DIR and so its own registry segment) in a session of its own, and
measures the workloads of the contract. The loops that read the registry
are C (probe_kv.c with probe.h, compiled into DIR with cc -O2). Prints one
JSON object per line on stdout; progress goes to stderr.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import peerlib  # noqa: E402
from peerlib import Failure, emit, log, median  # noqa: E402

CRASH_GAP_US = 2000  # 2 ms between kills, as supervisor-bench.c
REVISIT_MIN_US = 2_000_000  # a key comes back at most every 2 s (intensity)
RESTART_TIMEOUT_S = 5
ADD_RUNS = 5


class Keyvisor(peerlib.Peer):
    """A private keyvisord, the CLI against it, and the C probe."""

    name = "keyvisor"
    default_crashes = 1000
    tools = ("cc",)
    install = "a C compiler"

    def __init__(self, args):
        super().__init__(args)
        build = Path(args.build).resolve()
        self.keyvisord = build / "supervisord" / "keyvisord"
        self.keyvisor = build / "supervisord" / "keyvisor"
        libkvshm = build / "shm" / "libkvshm.a"
        for path in (self.keyvisord, self.keyvisor, libkvshm):
            if not path.exists():
                raise Failure(f"{path} is missing; build with "
                              f"ninja -C {build}")
        self.instance = f"peers-{os.getpid()}"
        self.segment = f"keyvisor.{self.instance}"
        self.sock = self.tmp / "kv.sock"
        if len(str(self.sock)) >= 108:
            raise Failure(f"{self.sock}: too long for a Unix socket path")
        self.probe = peerlib.Probe(
            "kv", self.tmp, cflags=["-I", peerlib.SRC / "shm" / "include"],
            libs=[libkvshm, "-pthread", "-lrt"])
        self.daemon = None  # the keyvisord Popen
        self.log_path = self.tmp / "keyvisord.log"
        # The CLIs find the daemon by its socket and instance name.
        self.env = dict(os.environ, KEYVISOR_SOCKET=str(self.sock),
                        KEYVISOR_INSTANCE=self.instance)
        self.env.pop("KEYVISOR_REGISTRY", None)
        self.probe.env = self.env

    # -- set-up and tear-down ---------------------------------------------

    def start_daemon(self):
        """keyvisord in its own session; returns once it listens."""
        log(f"starting keyvisord -n {self.instance}")
        with open(self.log_path, "wb") as errlog:
            # stdout to /dev/null; stderr (its event log, which the
            # workers also inherit: bench-worker writes nothing) to a file.
            self.daemon = subprocess.Popen(
                [str(self.keyvisord), "-n", self.instance],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=errlog, env=self.env, start_new_session=True,
                preexec_fn=peerlib.pdeathsig(signal.SIGTERM))
        self.procs.add(self.daemon.pid, "keyvisord")
        self.probe.prefix = [self.segment, str(self.daemon.pid)]
        end = time.monotonic() + 10
        while True:
            if self.daemon.poll() is not None:
                raise Failure(f"keyvisord exited {self.daemon.returncode}: "
                              + self.daemon_log_tail())
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.sock))
                break
            except OSError:
                if time.monotonic() > end:
                    raise Failure(f"keyvisord is not listening on "
                                  f"{self.sock}") from None
                time.sleep(0.005)

    def daemon_log_tail(self):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(empty log)"

    def stop(self):
        """SIGTERM keyvisord (it stops its workers), wait, KILL if needed;
        then check by pid that no worker seen is left."""
        self.probe.stop()
        d, self.daemon = self.daemon, None
        if d is None:
            return []
        if d.poll() is None:
            for pid in peerlib.children_of(d.pid):  # all its workers
                self.procs.add(pid)
            d.send_signal(signal.SIGTERM)
            peerlib.wait_or_kill(d, "keyvisord")
        # They would die of PDEATHSIG anyway; make sure.
        outlived, left = self.procs.sweep(1, "keyvisord")
        try:  # the daemon removes it; a killed one may not have
            os.unlink(f"/dev/shm/{self.segment}")
        except OSError:
            pass
        if outlived:
            raise Failure(f"{len(outlived)} workers outlived keyvisord "
                          f"(killed): {outlived[:5]}")
        log(f"keyvisord stopped (status {d.returncode}); none of the "
            f"{len(self.procs.procs) - 1} workers seen is left")
        return left

    # -- helpers ------------------------------------------------------------

    def cli(self, *argv):
        return [str(self.keyvisor), "-n", self.instance, *argv]

    def check_children(self, pids, what):
        """Each pid's parent is keyvisord; track them."""
        for p in pids:
            st = peerlib.proc_stat(p)
            if st is None or st.ppid != self.daemon.pid:
                raise Failure(f"{what}: worker {p} is not keyvisord's child")
            self.procs.add(p)

    def request(self, obj):
        """One request of keyvisor-protocol(7) on a connection of its own;
        the reply, which must be ok."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(60)
            s.connect(str(self.sock))
            s.sendall(json.dumps(obj).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        reply = json.loads(buf or b"{}")
        if not reply.get("ok"):
            raise Failure(f"{obj['op']} {obj.get('key', '')}: {reply}")
        return reply

    # -- the workloads ------------------------------------------------------

    def bringup(self):
        """Workload 1: keyvisor start --stdin with N keys."""
        n = len(self.keys)
        log(f"bring-up of {n} workers")
        keysfile = self.tmp / "keys"
        keysfile.write_text("".join(k + "\n" for k in self.keys))
        out = self.tmp / "start.out"
        up = self.probe.run_up(self.keys, 60 + n // 20,
                               self.cli("start", "--stdin", "--",
                                        str(self.worker)),
                               stdin=keysfile, stdout=out)
        # The CLI's own "key pid" lines must agree with the registry.
        printed = dict(line.split() for line in out.read_text().splitlines())
        if any(int(printed.get(k, 0)) != pid for k, pid in up.pids.items()):
            raise Failure("bring-up: the pids printed by keyvisor start "
                          "--stdin differ from the registry's")
        self.check_children(up.pids.values(), "bring-up")
        ms = (up.last - up.t0) / 1e6
        emit("bringup_ms", ms,
             f"one `keyvisor start --stdin -- WORKER` with the {n} keys on "
             "its stdin against the running keyvisord, timed (in C) from its "
             "fork until it has exited 0 and every key shows a live pid "
             "(kill(pid,0)) through kv_reg_lookup; the CLI exits once every "
             "worker has exec'd. Parents checked: keyvisord.")
        log(f"bring-up: {ms:.1f} ms")

    def restarts(self):
        """Workload 2: SIGKILL, then spin on kv_reg_lookup."""
        n, c = len(self.keys), self.args.crashes
        log(f"restarts: {c} crashes")
        lat, lost, new = self.probe.restarts(
            self.keys, c, CRASH_GAP_US, REVISIT_MIN_US, RESTART_TIMEOUT_S)
        for p in new:
            self.procs.add(p)
        peerlib.emit_restarts(
            lat, lost,
            f"SIGKILL of a worker's pid until kv_reg_lookup (C, spinning "
            f"with sched_yield) shows a new pid that is alive; {len(lat)} "
            f"crashes >= {CRASH_GAP_US / 1000:g} ms apart, round-robin over "
            f"the {n} shuffled keys (a key comes back at most every "
            f"{REVISIT_MIN_US / 1e6:g} s, under the default restart "
            "intensity of 3 in 5 s); default policy: restart at once, no "
            "backoff, no uptime throttle; the daemon-wide limit of 1000 "
            "restarts/s (burst 100) is never reached at this pace; lost "
            f"(not seen within {RESTART_TIMEOUT_S} s): {lost}")

    def lookup_program(self):
        """Workload 3b: L checked kv_reg_lookup calls from C."""
        n = self.args.lookups
        log(f"{n} lookups through kv_reg_lookup")
        ns, _ = self.probe.lookups(self.keys, n)
        emit("lookup_program_us", ns / 1000,
             f"mean of {n} kv_reg_lookup() calls (C, -O2) on random keys "
             "from one process that mapped the registry read-only; each "
             "result checked against the key's pid and the daemon's pid; "
             "no system call, no message to the daemon")
        log(f"program lookup: {ns:.0f} ns")

    def lookup_shell(self):
        """Workload 3a: one whole `keyvisor lookup KEY` process."""
        runs = self.args.shell_runs
        log(f"{runs} runs of keyvisor lookup")
        pids = self.probe.pids(self.keys)
        times = peerlib.time_shell_lookups(
            runs, self.keys, lambda k: self.cli("lookup", k), pids,
            env=self.env)
        emit("lookup_shell_us", median(times),
             f"median of {runs} runs of `keyvisor -n NAME lookup KEY` over "
             "random keys, each timed around the whole process "
             "(peerlib.time_command: fork, exec, map the registry, look up, "
             "print, exit, wait); output checked against the registry's pid")

    def memory(self):
        """Workload 5: keyvisord's Pss (registry pages included)."""
        peerlib.emit_memory(
            [self.daemon.pid],
            f"Pss of keyvisord (one process) from /proc/PID/smaps_rollup "
            f"with {len(self.keys)} workers running, after the restarts; its "
            "mapping of the registry segment (the pages the names touched) "
            "is included; workers not counted", "keyvisord only")

    def add_runs(self, start, stop):
        """ADD_RUNS times: START() adds `extra` and returns (ms, pid);
        STOP() removes it again (untimed). The times (ms)."""
        times = []
        for _ in range(ADD_RUNS):
            ms, pid = start()
            self.check_children([pid], "add")
            times.append(ms)
            stop()
            if peerlib.same_process(pid, self.procs.start(pid)):
                raise Failure(f"extra's worker {pid} outlived its stop")
        return times

    def add_worker(self):
        """Workload 4, the user's way: keyvisor start extra -- WORKER."""
        log(f"add one worker with the CLI, {ADD_RUNS} times")

        def start():
            up = self.probe.run_up(["extra"], 30, self.cli(
                "start", "extra", "--", str(self.worker)))
            return (up.last - up.t0) / 1e6, up.pids["extra"]

        def stop():
            r = subprocess.run(self.cli("stop", "extra"), env=self.env,
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise Failure(f"keyvisor stop extra: {r.stderr.strip()}")

        times = self.add_runs(start, stop)
        emit("add_worker_ms", median(times),
             f"median of {ADD_RUNS}: `keyvisor start extra -- WORKER` with "
             f"{len(self.keys)} workers running, timed (in C) from its fork "
             "until it has exited 0 and kv_reg_lookup shows a live pid; "
             "`keyvisor stop extra` between runs (untimed). "
             + peerlib.runs_note(times, "{:.2f}"))
        log(f"add (CLI): {median(times):.2f} ms")

    def add_worker_api(self):
        """Workload 4, a program's way: the start request on the socket."""
        log(f"add one worker over the control socket, {ADD_RUNS} times")

        def start():
            rows = self.probe.run("start-api", self.probe.items_file(
                ["extra"]), 30, self.sock, "--", self.worker, timeout=90)
            up = self.probe.up(rows, ["extra"])
            return (up.last - up.t0) / 1e6, up.pids["extra"]

        times = self.add_runs(start, lambda: self.request(
            {"op": "stop", "key": "extra"}))
        emit("add_worker_api_ms", median(times),
             f"median of {ADD_RUNS}, with {len(self.keys)} workers running, "
             "from C (probe_kv.c): connect to keyvisord's control socket, "
             "send one `{\"op\":\"start\",\"key\":\"extra\",\"argv\":"
             "[WORKER]}` line (keyvisor-protocol(7)), read the reply (it "
             "comes once the worker is spawned), close, then kv_reg_lookup "
             "until it shows a live pid, the reply's; timed from before the "
             "connect. Removed between runs with the stop request "
             "(untimed). " + peerlib.runs_note(times, "{:.2f}"))
        log(f"add (API): {median(times):.2f} ms")

    def run(self):
        r = subprocess.run([str(self.keyvisord), "--version"],
                           capture_output=True, text=True)
        emit("version", None, (r.stdout or r.stderr).strip()
             + f" ({self.keyvisord}); defaults (no -c): restart policy "
             "permanent, intensity 3 in 5 s, restart_rate 1000/s burst 100, "
             "log_level info; keyvisord's stdout /dev/null, its stderr (its "
             "log, which the workers inherit; bench-worker writes nothing) "
             "to a file in --tmp; workers exec'd by keyvisord (vfork), no "
             "shell")
        self.probe.compile()
        self.start_daemon()
        self.bringup()
        self.restarts()
        self.lookup_program()
        self.lookup_shell()
        self.memory()
        self.add_worker()
        self.add_worker_api()


if __name__ == "__main__":
    sys.exit(peerlib.main(Keyvisor))
