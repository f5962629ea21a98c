#!/usr/bin/env python3
"""Elixir peer of the keyvisor peer comparison (contract: tests/bench/peers/).

Runs peer_elixir.exs (next to this file) in one BEAM VM, a distributed node
on loopback only, and drives it over a line protocol on its stdin/stdout.
The VM side is a Registry (keys: :unique) + a DynamicSupervisor whose
children are GenServers (restart: :permanent, registered by key through
the Registry) that each run the worker through a Port and store its OS pid
as their Registry value.

    python3 peer_elixir.py --workers N --crashes C --shell-runs R \
        --lookups L --worker PATH --tmp DIR [--build BUILDDIR]

Prints one JSON object per line on stdout; progress on stderr.

Process handling: a private epmd (own port, loopback) and the VM each run in
their own session; this script makes itself a child subreaper so that the
workers, which outlive the VM (a port closing only closes the worker's
stdin), come back to it and can be killed and reaped by pid at the end.
"""

import argparse
import ctypes
import json
import os
import random
import secrets
import select
import signal
import socket
import statistics
import subprocess
import sys
import time

PEER = "elixir"
HERE = os.path.dirname(os.path.abspath(__file__))
EXS = os.path.join(HERE, "peer_elixir.exs")
LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"
SHELL_RUNS_CAP = 10  # runs after which a median over 2 s stops them


def log(msg):
    print(f"[peer_elixir] {msg}", file=sys.stderr, flush=True)


class Fail(Exception):
    pass


def on_term(signum, frame):
    raise SystemExit(f"signal {signum}")


# --------------------------------------------------------------- /proc helpers

def proc_stat(pid):
    """(state, ppid, starttime) of pid, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[19])


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def alive(pid, start):
    """True while pid is the same process (same start time), not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[2] == start and st[0] not in ("Z", "X")


def children_of(ppid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st and st[1] == ppid:
                out.append(int(d))
    return out


def smaps(pid):
    """(Pss, Rss) in KiB from /proc/PID/smaps_rollup."""
    pss = rss = None
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    return pss, rss


def reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def reap_orphans(keep):
    """Reap zombie children of this script other than the Popen'd ones in
    keep: as a subreaper it inherits, e.g., the `epmd -daemon` that every
    erl start runs (it exits at once, as our epmd holds the port)."""
    me = os.getpid()
    for p in children_of(me):
        st = proc_stat(p)
        if p not in keep and st and st[0] == "Z":
            reap(p)


def set_subreaper():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except Exception:
        return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def nearest_rank(xs, p):
    xs = sorted(xs)
    k = max(1, -(-len(xs) * p // 100))  # ceil(n*p/100)
    return xs[min(len(xs), k) - 1]


# ------------------------------------------------------------------- the peer

class Peer:
    def __init__(self, args):
        self.a = args
        self.tracked = {}      # pid -> (starttime, what): everything we started
        self.epmd = None
        self.vm = None
        self.ecs = None        # erl_child_setup pid
        self.buf = b""
        self.cookie = secrets.token_hex(16)
        self.node = f"kvbench_{os.getpid()}@127.0.0.1"
        self.env = dict(os.environ)
        self.results = []

    def track(self, pid, what):
        st = proc_stat(pid)
        if st is not None and pid not in self.tracked:
            self.tracked[pid] = (st[2], what)

    def emit(self, metric, value, note=""):
        self.results.append({"peer": PEER, "metric": metric,
                             "value": value, "note": note})

    # ---- VM line protocol
    def send(self, line):
        self.vm.stdin.write((line + "\n").encode())
        self.vm.stdin.flush()

    def recv(self, timeout=60.0):
        """Next 'KV ...' line from the VM as a list of words."""
        deadline = time.monotonic() + timeout
        fd = self.vm.stdout.fileno()
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith("KV "):
                    words = text[3:].split()
                    if words and words[0] in ("error", "timeout"):
                        raise Fail(f"VM answered: {text[3:]}")
                    return words
                if text.strip():
                    log(f"vm stdout: {text}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail("no answer from the VM within %.0f s" % timeout)
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise Fail("the VM closed its stdout (exited?); see "
                               + os.path.join(self.a.tmp, "beam.stderr"))
                self.buf += chunk

    def expect(self, word, timeout=60.0):
        w = self.recv(timeout)
        if w[0] != word:
            raise Fail(f"expected '{word}' from the VM, got {' '.join(w)[:200]}")
        return w[1:]

    def read_pids(self, words):
        pids = {}
        for kv in words:
            k, p = kv.split("=")
            if not p.isdigit():
                raise Fail(f"key {k} has no OS pid in the Registry")
            pids[k] = int(p)
            self.track(int(p), "worker")
        return pids

    # ---- start
    def start(self):
        a = self.a
        self.env["ERL_EPMD_PORT"] = str(free_port())
        self.env.pop("ERL_AFLAGS", None)
        self.env.pop("ERL_ZFLAGS", None)
        # Raise the fd limit: each port holds pipes in the VM.
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

        with open(os.path.join(a.tmp, "epmd.log"), "wb") as lf:
            self.epmd = subprocess.Popen(
                ["epmd", "-port", self.env["ERL_EPMD_PORT"], "-address", "127.0.0.1"],
                stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                start_new_session=True, env=self.env)
        self.track(self.epmd.pid, "epmd")
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", int(self.env["ERL_EPMD_PORT"])), 0.1).close()
                break
            except OSError:
                if self.epmd.poll() is not None:
                    raise Fail("epmd exited at start; see " + os.path.join(a.tmp, "epmd.log"))
                time.sleep(0.025)
        else:
            raise Fail("epmd did not start listening")
        log(f"epmd pid {self.epmd.pid} on 127.0.0.1:{self.env['ERL_EPMD_PORT']}")

        cmd = ["elixir", "--name", self.node, "--cookie", self.cookie,
               "--erl", LOOPBACK_DIST, EXS, "--worker", a.worker]
        t0 = time.monotonic()
        self.vm = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(os.path.join(a.tmp, "beam.stderr"), "wb"),
            start_new_session=True, cwd=a.tmp, env=self.env)
        self.track(self.vm.pid, "vm")  # the shell script, exec'd into beam.smp
        hello = self.expect("hello", 120)
        self.boot_ms = (time.monotonic() - t0) * 1e3
        self.track(self.vm.pid, "vm")
        self.elixir_v, self.otp, self.erts, node, self.clock_id = hello[:5]
        if node != self.node:
            raise Fail(f"VM node is {node}, expected {self.node}")
        if proc_comm(self.vm.pid) != "beam.smp":
            raise Fail(f"pid {self.vm.pid} is {proc_comm(self.vm.pid)}, not beam.smp")
        kids = [p for p in children_of(self.vm.pid) if proc_comm(p) == "erl_child_setup"]
        if len(kids) != 1:
            raise Fail(f"cannot find beam.smp's erl_child_setup (children: {kids})")
        self.ecs = kids[0]
        self.track(self.ecs, "erl_child_setup")
        for p in children_of(self.vm.pid):
            self.track(p, "vm helper " + (proc_comm(p) or "?"))
        log(f"VM up in {self.boot_ms:.0f} ms: beam.smp {self.vm.pid}, "
            f"erl_child_setup {self.ecs}, node {self.node}")

        # Does :os.perf_counter(:nanosecond) share CLOCK_MONOTONIC with us?
        worst = 0
        for _ in range(5):
            b0 = time.monotonic_ns()
            self.send("clock")
            v = int(self.expect("clock")[0])
            b1 = time.monotonic_ns()
            if not b0 <= v <= b1:
                raise Fail(f"VM clock {v} not within [{b0}, {b1}]: clocks not shared")
            worst = max(worst, b1 - b0)
        log(f"clock shared ({self.clock_id}; round trip <= {worst / 1e3:.0f} us)")

    # ---- workloads
    def run(self):
        a = self.a
        n = a.workers
        self.emit("version", None,
                  f"Elixir {self.elixir_v} on Erlang/OTP {self.otp} (erts {self.erts}); "
                  f"Registry (keys: :unique, 1 partition) + DynamicSupervisor (one_for_one, "
                  f"max_restarts 1000000 in max_seconds 1, so the benchmark's crashes never "
                  f"exceed its restart intensity) + GenServer (restart: :permanent, "
                  f"{{:via, Registry, ...}}) per key owning a Port ({{:spawn_executable, "
                  f"worker}}, [:binary, :exit_status]) that runs the worker directly (no shell); "
                  f"the GenServer stops with {{:shutdown, {{:exit_status, S}}}} when the worker "
                  f"exits (no crash log; DynamicSupervisor's child_terminated report is an "
                  f"OTP/SASL report that Elixir's Logger drops by default). Worker stdin/stdout "
                  f"are pipes to the VM (bench-worker uses neither), stderr the VM's (to a log "
                  f"file). One VM: `elixir --name kvbench_PID@127.0.0.1 --cookie RANDOM --erl "
                  f"'{LOOPBACK_DIST}' peer_elixir.exs`, with a private epmd (-address "
                  f"127.0.0.1, own ERL_EPMD_PORT) started and stopped by this script; driven "
                  f"over a line protocol on the VM's stdin/stdout")

        # 1. bring-up
        log(f"bring-up of {n} workers")
        self.send(f"bringup {n}")
        us, ok = map(int, self.expect("bringup", 600))
        pids = self.read_pids(self.expect("pids"))
        if ok != n or len(pids) != n:
            raise Fail(f"bring-up: {ok} of {n} started")
        bad = [k for k, p in pids.items()
               if not alive(p, self.tracked[p][0]) or proc_stat(p)[1] != self.ecs]
        if bad:
            raise Fail(f"bring-up: {len(bad)} workers not running under erl_child_setup, e.g. {bad[0]}")
        self.emit("bringup_ms", us / 1e3,
                  f"in-VM time (:erlang.monotonic_time) of {n} sequential "
                  "DynamicSupervisor.start_child calls (each returns after the GenServer's "
                  "init opened the Port and stored Port.info(port, :os_pid) with "
                  "Registry.update_value) plus one Registry.lookup pass confirming every key "
                  f"has its OS pid; VM already running (BEAM+Elixir boot as a named node: "
                  f"{self.boot_ms:.0f} ms, not included). Workers are children of "
                  "erl_child_setup (BEAM's spawn helper, child of beam.smp), each in its own session")
        log(f"bring-up {us / 1e3:.1f} ms")

        # 2. restart latency
        keys = sorted(pids)
        random.shuffle(keys)
        lat = []
        polls = []
        log(f"{a.crashes} crashes")
        for i in range(a.crashes):
            k = keys[i % n]
            old = pids[k]
            self.send(f"watch {k} {old}")
            self.expect("ready")
            t0 = time.monotonic_ns()
            os.kill(old, signal.SIGKILL)
            w = self.expect("restarted", 30)
            new, t1 = int(w[1]), int(w[2])
            if w[0] != k or new == old:
                raise Fail(f"restart: bad answer {w}")
            self.track(new, "worker")
            try:
                os.kill(new, 0)
            except OSError:
                raise Fail(f"restart: new pid {new} of {k} is not alive")
            if proc_stat(new)[1] != self.ecs:
                raise Fail(f"restart: new pid {new} is not a child of erl_child_setup")
            pids[k] = new
            lat.append((t1 - t0) / 1e3)
            polls.append(int(w[3]))
        rnote = (f"SIGKILL of the worker's OS pid by this Python script (os.kill; t0 = "
                 f"CLOCK_MONOTONIC just before it) until a BEAM process polling "
                 f"Registry.lookup(Reg, key) (with :erlang.yield() between lookups: a "
                 f"poller that never yields held up the restart ~10x on a busy 2-core "
                 f"machine) sees a new OS pid and File.exists?(/proc/PID) "
                 f"(t1 = :os.perf_counter(:nanosecond), checked to be the same "
                 f"{self.clock_id} as Python's time.monotonic_ns); new pid re-checked with "
                 f"kill(pid,0) afterwards. Path: port exit_status -> GenServer stops "
                 f"{{:shutdown, _}} -> DynamicSupervisor restarts at once (no backoff in OTP; "
                 f"max_restarts 1000000 per 1 s so crashes never kill it) -> new Port via "
                 f"erl_child_setup -> Registry.update_value. {len(lat)} crashes round-robin "
                 f"over shuffled keys, one at a time; median {statistics.median(polls):.0f} "
                 f"lookups per restart")
        self.emit("restart_p50_us", round(nearest_rank(lat, 50), 1), rnote)
        self.emit("restart_p99_us", round(nearest_rank(lat, 99), 1),
                  f"nearest rank over {len(lat)} crashes; as restart_p50_us")
        self.emit("restart_max_us", round(max(lat), 1), "as restart_p50_us")
        self.emit("restart_n", len(lat), "crashes timed; as restart_p50_us")
        log(f"restart p50 {nearest_rank(lat, 50):.0f} us, max {max(lat):.0f} us")

        # 3. lookups
        log(f"{a.lookups} Registry.lookup calls")
        self.send(f"lookup {a.lookups}")
        us, l, bad = map(int, self.expect("lookup", 600))
        if bad:
            raise Fail(f"lookup: {bad} of {l} wrong")
        self.emit("lookup_program_us", round(us / l, 4),
                  f"Registry.lookup(Reg, key) -> [{{gen_server_pid, os_pid}}] inside the VM "
                  f"(one BEAM process, an ETS lookup in a 1-partition :unique Registry), {l} "
                  f"random keys, each result compared with the expected OS pid; :timer.tc over "
                  f"the whole loop / {l}")

        runs = a.shell_runs
        log(f"up to {runs} elixir --rpc-eval runs")
        times = []
        for i in range(runs):
            if i >= SHELL_RUNS_CAP and statistics.median(times) > 2e6:
                break
            k = random.choice(keys)
            cmd = ["elixir", "--name", f"kvq{os.getpid()}_{i}@127.0.0.1",
                   "--cookie", self.cookie, "--erl", LOOPBACK_DIST,
                   "--rpc-eval", self.node,
                   f'[{{_, p}}] = Registry.lookup(KVBench.Reg, "{k}"); IO.puts(p)']
            t0 = time.monotonic()
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True,
                                 cwd=a.tmp, env=self.env)
            self.track(p.pid, "rpc client")
            try:
                out, err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                raise Fail("elixir --rpc-eval took more than 60 s")
            t1 = time.monotonic()
            if p.returncode != 0 or out.decode().strip() != str(pids[k]):
                raise Fail(f"elixir --rpc-eval for {k}: rc {p.returncode}, printed "
                           f"{out.decode().strip()!r}, expected {pids[k]}; stderr "
                           f"{err.decode().strip()[:200]!r}")
            times.append((t1 - t0) * 1e6)
            reap_orphans(self.popen_pids())
        capped = (f"; stopped after {len(times)} of {a.shell_runs} runs because the median "
                  "was over 2 s" if len(times) < a.shell_runs else "")
        self.emit("lookup_shell_us", round(statistics.median(times), 1),
                  f"median wall time of {len(times)} runs of `elixir --name q@127.0.0.1 --cookie C "
                  f"--erl '{LOOPBACK_DIST}' --rpc-eval {self.node} '[{{_, p}}] = "
                  f"Registry.lookup(KVBench.Reg, KEY); IO.puts(p)'` (a new BEAM VM as a named "
                  f"node, distributed Erlang over loopback via a private epmd), random keys, "
                  f"output checked{capped}")
        log(f"shell lookup median {statistics.median(times) / 1e3:.0f} ms")

        # 4. add a worker
        adds = []
        for i in range(5):
            self.send("add")
            us, ospid = map(int, self.expect("add"))
            self.track(ospid, "worker")
            if not alive(ospid, self.tracked[ospid][0]) or proc_stat(ospid)[1] != self.ecs:
                raise Fail(f"add: extra's pid {ospid} not running under erl_child_setup")
            adds.append(us / 1e3)
            self.send("remove")
            (rp,) = map(int, self.expect("removed"))
            if rp != ospid:
                raise Fail(f"remove: VM removed {rp}, expected {ospid}")
            self.kill_wait([ospid])
        self.emit("add_worker_ms", round(statistics.median(adds), 3),
                  f"median of {len(adds)}: in-VM time of DynamicSupervisor.start_child for "
                  f"key 'extra' (returns after init stored the OS pid) plus a Registry.lookup "
                  f"confirming it, with {n} workers running; between runs "
                  f"DynamicSupervisor.terminate_child (which closes the Port; bench-worker "
                  f"ignores its stdin closing) then SIGTERM to its OS pid from this script")

        # 5. memory, with the N workers running
        self.send("mem")
        total, nproc, nports = map(int, self.expect("mem"))
        procs = [(self.vm.pid, "beam.smp")]
        procs += [(p, proc_comm(p)) for p in children_of(self.vm.pid)]
        sums = {}
        rss_main = None
        for p, name in procs:
            pss, rss = smaps(p)
            sums[f"{name}[{p}]"] = pss
            if p == self.vm.pid:
                rss_main = rss
        epmd_pss, _ = smaps(self.epmd.pid)
        total_pss = sum(sums.values()) + epmd_pss
        parts = ", ".join(f"{k} {v}" for k, v in sums.items())
        mnote = (f"Pss sum over {parts}, and epmd {epmd_pss} KiB (started by this script "
                 f"on a private port; a VM would start its own otherwise), with {n} workers "
                 f"running; in-VM :erlang.memory(:total) = {total // 1024} KiB, "
                 f"{nproc} BEAM processes, {nports} ports")
        self.emit("mem_kib", total_pss, mnote)
        self.emit("mem_procs", len(procs) + 1, "beam.smp, its non-worker child processes "
                  f"({', '.join(str(name) for _, name in procs[1:])}) and epmd")
        self.emit("rss_main_kib", rss_main, "Rss of beam.smp")

    def popen_pids(self):
        return {p.pid for p in (self.vm, self.epmd) if p is not None}

    # ---- stop
    def kill_wait(self, pids, timeout=5.0):
        """SIGTERM, wait, SIGKILL the given tracked pids; reap them."""
        live = [p for p in pids if p in self.tracked and alive(p, self.tracked[p][0])]
        for p in live:
            try:
                os.kill(p, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while live and time.monotonic() < deadline:
            for p in live:
                reap(p)
            live = [p for p in live if alive(p, self.tracked[p][0])]
            if live:
                time.sleep(0.01)
        for p in live:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while live and time.monotonic() < deadline:
            for p in live:
                reap(p)
            live = [p for p in live if alive(p, self.tracked[p][0])]
            if live:
                time.sleep(0.01)
        return live

    def stop(self):
        """Stop everything this script started, by pid. Returns leftovers."""
        # Workers we may not have heard of yet: the children of erl_child_setup.
        if self.ecs and alive(self.ecs, self.tracked[self.ecs][0]):
            for p in children_of(self.ecs):
                self.track(p, "worker")
        if self.vm is not None and self.vm.poll() is None:
            clean = False
            try:
                self.send("stop")
                self.expect("stopped", 30)
                self.vm.wait(30)
                clean = True
            except Exception as e:
                log(f"VM did not stop cleanly ({e}); killing it")
            if not clean:
                if self.ecs and alive(self.ecs, self.tracked[self.ecs][0]):
                    for p in children_of(self.ecs):
                        self.track(p, "worker")
                self.kill_wait([self.vm.pid])
                try:
                    self.vm.wait(5)
                except Exception:
                    pass
        # The VM is gone; its ports' workers are left (reparented to us), and
        # anything else that came back to us as subreaper is ours too.
        for p in children_of(os.getpid()):
            if p not in self.popen_pids():
                self.track(p, "orphan " + (proc_comm(p) or "?"))
        workers = [p for p, (_, w) in self.tracked.items() if w == "worker"]
        left = self.kill_wait(workers)
        others = [p for p, (_, w) in self.tracked.items() if w not in ("worker", "epmd")]
        left += self.kill_wait(others)
        if self.epmd is not None:
            left += self.kill_wait([self.epmd.pid])
            try:
                self.epmd.wait(5)
            except Exception:
                pass
        reap_orphans(self.popen_pids())
        n_workers = len(workers)
        left = [p for p in self.tracked if alive(p, self.tracked[p][0])]
        log(f"stopped: VM, epmd and {n_workers} worker pids seen during the run; "
            f"{len(left)} left")
        return left


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=1000)
    ap.add_argument("--crashes", type=int, default=20)
    ap.add_argument("--shell-runs", type=int, default=50)
    ap.add_argument("--lookups", type=int, default=100000)
    ap.add_argument("--worker")
    ap.add_argument("--tmp")
    ap.add_argument("--build", default=os.path.normpath(os.path.join(HERE, "..", "..", "..", "build")))
    a = ap.parse_args()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    if a.worker is None:
        a.worker = os.path.join(a.build, "tests", "bench", "bench-worker")
    a.worker = os.path.abspath(a.worker)
    if not os.access(a.worker, os.X_OK):
        print(f"peer_elixir: worker {a.worker} is not executable (ninja -C {a.build}?)",
              file=sys.stderr)
        return 2
    for prog in ("elixir", "epmd"):
        if not any(os.access(os.path.join(d, prog), os.X_OK)
                   for d in os.environ.get("PATH", "").split(":") if d):
            print(f"peer_elixir: {prog} not found (apt-get install elixir)", file=sys.stderr)
            return 2
    if a.workers < 1 or a.crashes < 1 or a.lookups < 1 or a.shell_runs < 1:
        print("peer_elixir: counts must be >= 1", file=sys.stderr)
        return 2
    if a.tmp is None:
        import tempfile
        a.tmp = tempfile.mkdtemp(prefix="peer_elixir.")
    os.makedirs(a.tmp, exist_ok=True)
    a.tmp = os.path.abspath(a.tmp)
    if not set_subreaper():
        log("warning: PR_SET_CHILD_SUBREAPER failed; orphaned workers go to pid 1")

    peer = Peer(a)
    err = None
    try:
        peer.start()
        peer.run()
    except Fail as e:
        err = str(e)
    except (KeyboardInterrupt, SystemExit) as e:
        err = f"interrupted ({e or 'SIGINT'})"
    except Exception as e:
        err = f"{type(e).__name__}: {e}"
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the stop finish
        try:
            left = peer.stop()
        except BaseException as e:  # keep going: report it
            left = [f"stop failed: {e}"]
    if left:
        print(f"peer_elixir: processes left after stopping: {left}", file=sys.stderr)
        return 1
    if err:
        tail = ""
        try:
            with open(os.path.join(a.tmp, "beam.stderr")) as f:
                tail = f.read()[-2000:]
        except OSError:
            pass
        if tail.strip():
            print(tail, file=sys.stderr)
        print(f"peer_elixir: {err}", file=sys.stderr)
        return 1
    for r in peer.results:
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
