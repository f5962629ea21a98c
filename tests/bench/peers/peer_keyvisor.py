#!/usr/bin/env python3
"""keyvisor's side of the peer comparison (see README.md in this folder).

    python3 peer_keyvisor.py --workers N --crashes C --shell-runs R \
        --lookups L --worker PATH --tmp DIR [--build BUILDDIR]

Starts a private keyvisord (its own instance name, its own control socket
in DIR and so its own registry segment) in a session of its own, and
measures the workloads of the shared contract. The timing loops that read
the registry are C (probe_kv.c, compiled into DIR with cc -O2). Prints one
JSON object per line on stdout; progress goes to stderr.
"""

import argparse
import ctypes
import json
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

PEER = "keyvisor"
HERE = Path(__file__).resolve().parent
SRC = HERE.parents[2]  # the top of the source tree
CRASH_GAP_US = 2000  # 2 ms between kills, as supervisor-bench.c
REVISIT_MIN_US = 2_000_000  # a key comes back at most every 2 s (intensity)
ADD_RUNS = 5
SEED = 42


def log(msg):
    """Progress, on stderr."""
    print(f"peer_keyvisor: {msg}", file=sys.stderr, flush=True)


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


def start_time(pid):
    """Field 22 of /proc/PID/stat (start time in ticks), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the ")" that ends comm: state is field 3.
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def ppid_of(pid):
    """The parent pid of PID, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[1])


def children_of(parent):
    """{pid: start_time} of every process whose parent is PARENT."""
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and ppid_of(int(name)) == parent:
            st = start_time(int(name))
            if st is not None:
                kids[int(name)] = st
    return kids


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
    """In the child before exec: SIGTERM it if this script dies (even of
    SIGKILL), so that no daemon outlives us (its workers die with it)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Keyvisor:
    """A private keyvisord, the CLI against it, and the C probe."""

    def __init__(self, args):
        self.args = args
        self.tmp = Path(args.tmp).resolve()
        build = Path(args.build).resolve()
        self.keyvisord = build / "supervisord" / "keyvisord"
        self.keyvisor = build / "supervisord" / "keyvisor"
        self.libkvshm = build / "shm" / "libkvshm.a"
        for path in (self.keyvisord, self.keyvisor, self.libkvshm):
            if not path.exists():
                raise Failure(f"{path} is missing; build with "
                              f"ninja -C {build}")
        self.worker = str(Path(args.worker).resolve())
        self.name = f"peers-{os.getpid()}"
        self.segment = f"keyvisor.{self.name}"
        self.sock = self.tmp / "kv.sock"
        if len(str(self.sock)) >= 108:
            raise Failure(f"{self.sock}: too long for a Unix socket path")
        self.keys = key_names(args.workers)
        self.keysfile = self.tmp / "keys"
        self.keysfile.write_text("".join(k + "\n" for k in self.keys))
        self.probe = self.tmp / "probe_kv"
        self.daemon = None  # the keyvisord Popen
        self.log_path = self.tmp / "keyvisord.log"
        self.seen = {}  # {pid: start_time} of every worker we saw
        # The CLIs find the daemon by its socket and instance name.
        self.env = dict(os.environ, KEYVISOR_SOCKET=str(self.sock),
                        KEYVISOR_INSTANCE=self.name)
        self.env.pop("KEYVISOR_REGISTRY", None)

    # -- set-up and tear-down ------------------------------------------

    def compile_probe(self):
        """cc -O2 probe_kv.c against the static registry library."""
        cmd = ["cc", "-O2", "-I", str(SRC / "shm" / "include"),
               "-o", str(self.probe), str(HERE / "probe_kv.c"),
               str(self.libkvshm), "-pthread", "-lrt"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise Failure(f"unable to run cc: {e}")
        if r.returncode != 0:
            raise Failure("unable to compile probe_kv.c: "
                          + r.stderr.strip().replace("\n", " | "))

    def start_daemon(self):
        """keyvisord in its own session; returns once it listens."""
        log(f"starting keyvisord -n {self.name}")
        with open(self.log_path, "wb") as errlog:
            # stdout to /dev/null; stderr (its event log, which the
            # workers also inherit: bench-worker writes nothing) to a file.
            self.daemon = subprocess.Popen(
                [str(self.keyvisord), "-n", self.name],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=errlog, env=self.env, start_new_session=True,
                preexec_fn=die_with_parent)
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
                                  f"{self.sock}")
                time.sleep(0.005)

    def daemon_log_tail(self):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(empty log)"

    def stop(self):
        """SIGTERM keyvisord (it stops its workers), wait, KILL if needed;
        then check by pid that no worker we saw is left."""
        d, self.daemon = self.daemon, None
        if d is None:
            return
        if d.poll() is None:
            # Every child now alive is one of its workers.
            self.seen.update(children_of(d.pid))
            d.send_signal(signal.SIGTERM)
            try:
                d.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log("keyvisord did not stop within 60 s; killing it")
                d.kill()
                d.wait()
        left = [p for p, st in self.seen.items()
                if st is not None and start_time(p) == st]
        for pid in left:  # they die of PDEATHSIG anyway; make sure
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:  # the daemon removes it; a killed one may not have
            os.unlink(f"/dev/shm/{self.segment}")
        except OSError:
            pass
        if left:
            raise Failure(f"{len(left)} workers outlived keyvisord "
                          f"(killed): {left[:5]}")
        log(f"keyvisord stopped (status {d.returncode}); none of the "
            f"{len(self.seen)} workers seen is left")

    # -- helpers --------------------------------------------------------

    def cli(self, *argv):
        return [str(self.keyvisor), "-n", self.name, *argv]

    def run_probe(self, *argv, timeout=300):
        """Run the probe; return its stdout lines split into words."""
        r = subprocess.run([str(self.probe), argv[0], self.segment,
                            str(self.daemon.pid), *argv[1:]],
                           stdout=subprocess.PIPE, env=self.env,
                           timeout=timeout, text=True)
        if r.returncode != 0:
            raise Failure(f"probe_kv {argv[0]} failed "
                          f"(exit {r.returncode}); daemon log: "
                          + self.daemon_log_tail())
        return [line.split() for line in r.stdout.splitlines()]

    def current_pids(self):
        """{key: pid} as the registry shows now (0: not found)."""
        rows = self.run_probe("dump", str(self.keysfile))
        return {w[1]: int(w[2]) for w in rows if w[0] == "pid"}

    def check_children(self, pids, what):
        """Each pid's parent is keyvisord, and remember them."""
        wrong = [p for p in pids if ppid_of(p) != self.daemon.pid]
        if wrong:
            raise Failure(f"{what}: {len(wrong)} workers are not "
                          f"keyvisord's children (e.g. {wrong[0]})")
        for p in pids:
            st = start_time(p)
            if st is not None:
                self.seen[p] = st

    # -- the workloads --------------------------------------------------

    def bringup(self):
        """Workload 1: keyvisor start --stdin with N keys."""
        n = len(self.keys)
        log(f"bring-up of {n} workers")
        out = self.tmp / "start.out"
        rows = self.run_probe(
            "bringup", str(self.keysfile), str(out), "--",
            *self.cli("start", "--stdin", "--", self.worker))
        ms = float(rows[0][1])
        pids = {w[1]: int(w[2]) for w in rows if w[0] == "pid"}
        # The CLI's own "key pid" lines must agree with the registry.
        printed = dict(line.split() for line in out.read_text().splitlines())
        if len(pids) != n or any(int(printed.get(k, 0)) != pid
                                 for k, pid in pids.items()):
            raise Failure("bring-up: the pids printed by keyvisor start "
                          "--stdin differ from the registry's")
        self.check_children(pids.values(), "bring-up")
        emit("bringup_ms", round(ms, 3),
             f"one `keyvisor start --stdin -- WORKER` with the {n} keys on "
             "its stdin against the running keyvisord, timed (in C) from its "
             "fork until it has exited 0 and every key shows a live pid "
             "(kill(pid,0)) through kv_reg_lookup; the CLI exits once every "
             "worker has exec'd. Parents checked: keyvisord.")
        log(f"bring-up: {ms:.1f} ms")

    def restarts(self):
        """Workload 2: SIGKILL, then spin on kv_reg_lookup."""
        n, c = len(self.keys), self.args.crashes
        gap = max(CRASH_GAP_US, REVISIT_MIN_US // n)
        log(f"restarts: {c} crashes {gap / 1000:.1f} ms apart")
        rows = self.run_probe("restart", str(self.keysfile), str(c),
                              str(gap), str(SEED), timeout=60 + c * 6)
        lat = sorted(float(w[1]) for w in rows if w[0] == "lat")
        lost = next(int(w[1]) for w in rows if w[0] == "lost")
        new = [int(w[3]) for w in rows if w[0] == "lat"]
        for p in new:
            st = start_time(p)
            if st is not None:
                self.seen[p] = st
        if not lat:
            raise Failure(f"restarts: none seen ({lost} lost)")
        how = (f"SIGKILL of a worker's pid until kv_reg_lookup (C, spinning "
               f"with sched_yield) shows a new pid that is alive; {c} crashes "
               f"{gap / 1000:g} ms apart, round-robin over the {n} shuffled "
               "keys (a key comes back at most every 2 s, under the default "
               "restart intensity of 3 in 5 s); default policy: restart at "
               "once, no backoff, no uptime throttle; the daemon-wide limit "
               "of 1000 restarts/s (burst 100) is never reached at this pace")
        if lost:
            how += f"; {lost} restarts not seen within 5 s (left out)"
        emit("restart_p50_us", round(nearest_rank(lat, 0.50), 1), how)
        emit("restart_p99_us", round(nearest_rank(lat, 0.99), 1),
             "nearest rank over the crashes timed")
        emit("restart_max_us", round(lat[-1], 1), "")
        emit("restart_n", len(lat), f"{lost} lost" if lost else "")
        log(f"restarts: p50 {nearest_rank(lat, 0.5):.1f} us, "
            f"p99 {nearest_rank(lat, 0.99):.1f} us, lost {lost}")

    def lookup_program(self):
        """Workload 3b: L checked kv_reg_lookup calls from C."""
        n = self.args.lookups
        log(f"{n} lookups through kv_reg_lookup")
        rows = self.run_probe("lookup", str(self.keysfile), str(n),
                              str(SEED))
        ns = float(rows[0][1])
        emit("lookup_program_us", round(ns / 1000, 4),
             f"mean of {n} kv_reg_lookup() calls (C, -O2) on random keys "
             "from one process that mapped the registry read-only; each "
             "result checked against the key's pid and the daemon's pid; "
             "no system call, no message to the daemon")
        log(f"program lookup: {ns:.0f} ns")

    def lookup_shell(self):
        """Workload 3a: one whole `keyvisor lookup KEY` process."""
        runs = self.args.shell_runs
        log(f"{runs} runs of keyvisor lookup")
        pids = self.current_pids()
        rnd = random.Random(SEED)
        times, base = [], []
        for _ in range(runs):
            key = rnd.choice(self.keys)
            t0 = time.perf_counter_ns()
            r = subprocess.run(self.cli("lookup", key), env=self.env,
                               stdout=subprocess.PIPE, text=True, timeout=10)
            t1 = time.perf_counter_ns()
            if r.returncode != 0 or r.stdout.strip() != str(pids[key]):
                raise Failure(f"keyvisor lookup {key} printed "
                              f"{r.stdout.strip()!r} (exit {r.returncode}), "
                              f"expected {pids[key]}")
            times.append((t1 - t0) / 1000)
            # /bin/true the same way, alternated: what Python's spawn costs.
            t0 = time.perf_counter_ns()
            subprocess.run(["/bin/true"], stdout=subprocess.PIPE)
            base.append((time.perf_counter_ns() - t0) / 1000)
        med = statistics.median(times)
        emit("lookup_shell_us", round(med, 1),
             f"median of {runs} runs of `keyvisor -n NAME lookup KEY` over "
             "random keys, each timed around Python's subprocess.run (fork, "
             "exec, map the registry, look up, print, exit, wait); output "
             "checked against the registry's pid. /bin/true timed the same "
             f"way: {statistics.median(base):.0f} us")
        log(f"shell lookup: {med:.0f} us")

    def memory(self):
        """Workload 5: keyvisord's Pss (registry pages included)."""
        pid = self.daemon.pid
        m = smaps_rollup(pid)
        n = len(self.keys)
        emit("mem_kib", m["Pss"],
             f"Pss of keyvisord (one process) from /proc/PID/smaps_rollup "
             f"with {n} workers running, after the restarts; its mapping of "
             "the registry segment (the pages the names touched) is "
             "included; workers not counted")
        emit("mem_procs", 1, "keyvisord only")
        emit("rss_main_kib", m["Rss"], "Rss of keyvisord")
        log(f"memory: Pss {m['Pss']} KiB, Rss {m['Rss']} KiB")

    def add_worker(self):
        """Workload 4: keyvisor start extra -- WORKER, ADD_RUNS times."""
        log(f"add one worker, {ADD_RUNS} times")
        times = []
        for _ in range(ADD_RUNS):
            rows = self.run_probe("add", "extra", "--",
                                  *self.cli("start", "extra", "--",
                                            self.worker))
            times.append(float(rows[0][1]))
            pid = int(rows[0][2])
            self.check_children([pid], "add")
            r = subprocess.run(self.cli("stop", "extra"), env=self.env,
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise Failure(f"keyvisor stop extra: {r.stderr.strip()}")
            if start_time(pid) == self.seen.get(pid, -1):
                raise Failure(f"extra's worker {pid} outlived its stop")
        med = statistics.median(times)
        emit("add_worker_ms", round(med, 3),
             f"median of {ADD_RUNS}: `keyvisor start extra -- WORKER` with "
             f"{len(self.keys)} workers running, timed (in C) from its fork "
             "until it has exited 0 and kv_reg_lookup shows a live pid; "
             "`keyvisor stop extra` between runs (untimed). Runs (ms): "
             + ", ".join(f"{t:.2f}" for t in times))
        log(f"add: {med:.2f} ms")

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
        self.compile_probe()
        self.start_daemon()
        self.bringup()
        self.restarts()
        self.lookup_program()
        self.lookup_shell()
        self.memory()
        self.add_worker()
        self.stop()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--crashes", type=int, default=1000)
    p.add_argument("--shell-runs", type=int, default=50)
    p.add_argument("--lookups", type=int, default=100000)
    p.add_argument("--worker", default=None,
                   help="default: BUILD/tests/bench/bench-worker")
    p.add_argument("--tmp", required=True)
    p.add_argument("--build", default=str(SRC / "build"))
    a = p.parse_args()
    if a.worker is None:
        a.worker = str(Path(a.build) / "tests" / "bench" / "bench-worker")
    if a.workers < 1 or a.crashes < 1 or a.shell_runs < 1 or a.lookups < 1:
        p.error("the sizes must be at least 1")
    if not os.access(a.worker, os.X_OK):
        p.error(f"{a.worker}: not an executable")
    return a


def on_signal(signum, frame):
    """SIGTERM/SIGINT: unwind through the finally that stops the daemon."""
    raise SystemExit(128 + signum)


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    kv, rc = None, 0
    try:
        kv = Keyvisor(args)
        kv.run()
    except Failure as e:
        print(f"peer_keyvisor: {e}", file=sys.stderr)
        rc = 1
    except subprocess.TimeoutExpired as e:
        print(f"peer_keyvisor: timed out: {e}", file=sys.stderr)
        rc = 1
    except OSError as e:
        print(f"peer_keyvisor: {e}", file=sys.stderr)
        rc = 1
    finally:
        if kv is not None:
            # No second signal interrupts the stop.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                kv.stop()
            except Failure as e:
                print(f"peer_keyvisor: {e}", file=sys.stderr)
                rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
