#!/usr/bin/env python3
"""Elixir's side of the peer comparison (see README.md in this folder).

    python3 peer_elixir.py --workers N --crashes C --shell-runs R \
        --lookups L --worker PATH --tmp DIR [--build BUILDDIR]

Runs peer_elixir.exs (next to this file) in one BEAM VM, a distributed node
on loopback only, and drives it over a line protocol on its stdin/stdout.
The VM side is a Registry (keys: :unique) + a DynamicSupervisor whose
children are GenServers (restart: :permanent, registered by key through
the Registry) that each run the worker through a Port and store its OS pid
as their Registry value. The shell lookup and the shell add are one
`elixir --rpc-eval` process each, against that node.

Prints one JSON object per line on stdout; progress on stderr.

Process handling: a private epmd (own port, loopback) and the VM each run in
their own session; this script makes itself a child subreaper so that the
workers, which outlive the VM (a port closing only closes the worker's
stdin), come back to it and can be killed and reaped by pid at the end.
"""

import os
import random
import resource
import secrets
import select
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import peerlib  # noqa: E402
from peerlib import Failure, emit, log, median  # noqa: E402

EXS = peerlib.HERE / "peer_elixir.exs"
LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"
SHELL_GIVE_UP = (10, 2e6)  # stop the shell runs after 10 if the median > 2 s
ADD_RUNS = 5


def elixir_string(s):
    """S as an Elixir string literal (no interpolation)."""
    return '"' + "".join("\\" + c if c in '\\"#' else c for c in s) + '"'


class Elixir(peerlib.Peer):
    """One BEAM VM with the Registry and the DynamicSupervisor, its epmd,
    and the rpc clients against it."""

    name = "elixir"
    tools = ("elixir", "epmd")
    install = "apt-get install elixir"

    def __init__(self, args):
        super().__init__(args)
        if not peerlib.set_subreaper():
            log("warning: PR_SET_CHILD_SUBREAPER failed; orphaned workers "
                "go to pid 1")
        self.epmd = None
        self.vm = None
        self.ecs = None  # erl_child_setup's pid
        self.buf = b""
        self.cookie = secrets.token_hex(16)
        self.node = f"kvbench_{os.getpid()}@127.0.0.1"
        self.env = dict(os.environ)
        self.env.pop("ERL_AFLAGS", None)
        self.env.pop("ERL_ZFLAGS", None)
        self.pids = {}  # key -> OS pid
        self.clients = 0  # rpc client nodes started, for their names

    # -- the VM's line protocol ---------------------------------------------

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
                        raise Failure(f"VM answered: {text[3:]}")
                    return words
                if text.strip():
                    log(f"vm stdout: {text}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"no answer from the VM within {timeout:.0f} s")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise Failure("the VM closed its stdout (exited?); see "
                                  f"{self.tmp / 'beam.stderr'}")
                self.buf += chunk

    def expect(self, word, timeout=60.0):
        w = self.recv(timeout)
        if w[0] != word:
            raise Failure(f"expected '{word}' from the VM, got "
                          f"{' '.join(w)[:200]}")
        return w[1:]

    def read_pids(self, words):
        """{key: OS pid} from `k=p` words; each a tracked worker."""
        pids = {}
        for kv in words:
            k, p = kv.split("=")
            if not p.isdigit():
                raise Failure(f"key {k} has no OS pid in the Registry")
            pids[k] = int(p)
            self.procs.add(int(p))
        return pids

    def check_worker(self, pid, what):
        """PID is alive and a child of the VM's erl_child_setup."""
        self.procs.add(pid)
        st = peerlib.proc_stat(pid)
        if not self.procs.live([pid]) or st is None or st.ppid != self.ecs:
            raise Failure(f"{what}: pid {pid} is not a live child of "
                          "erl_child_setup")

    # -- start and stop -------------------------------------------------------

    def start(self):
        port = socket.socket()
        port.bind(("127.0.0.1", 0))
        self.env["ERL_EPMD_PORT"] = str(port.getsockname()[1])
        port.close()
        # Raise the fd limit: each port holds pipes in the VM.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

        with open(self.tmp / "epmd.log", "wb") as lf:
            self.epmd = subprocess.Popen(
                ["epmd", "-port", self.env["ERL_EPMD_PORT"], "-address",
                 "127.0.0.1"], stdin=subprocess.DEVNULL, stdout=lf,
                stderr=lf, start_new_session=True, env=self.env)
        self.procs.add(self.epmd.pid, "epmd")
        for _ in range(200):
            try:
                socket.create_connection(
                    ("127.0.0.1", int(self.env["ERL_EPMD_PORT"])), 0.1).close()
                break
            except OSError:
                if self.epmd.poll() is not None:
                    raise Failure("epmd exited at start; see "
                                  f"{self.tmp / 'epmd.log'}") from None
                time.sleep(0.025)
        else:
            raise Failure("epmd did not start listening")
        log(f"epmd pid {self.epmd.pid} on 127.0.0.1:"
            f"{self.env['ERL_EPMD_PORT']}")

        cmd = ["elixir", "--name", self.node, "--cookie", self.cookie,
               "--erl", LOOPBACK_DIST, str(EXS), "--worker", str(self.worker)]
        t0 = time.monotonic()
        with open(self.tmp / "beam.stderr", "wb") as err:
            self.vm = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=err, start_new_session=True, cwd=self.tmp,
                env=self.env)
        # The elixir shell script, which execs erl, which execs beam.smp:
        # the same process all along.
        self.procs.add(self.vm.pid, "vm")
        hello = self.expect("hello", 120)
        self.boot_ms = (time.monotonic() - t0) * 1e3
        self.elixir_v, self.otp, self.erts, node, self.clock_id = hello[:5]
        if node != self.node:
            raise Failure(f"VM node is {node}, expected {self.node}")
        if peerlib.comm(self.vm.pid) != "beam.smp":
            raise Failure(f"pid {self.vm.pid} is "
                          f"{peerlib.comm(self.vm.pid)}, not beam.smp")
        kids = peerlib.children_of(self.vm.pid)
        ecs = [p for p in kids if peerlib.comm(p) == "erl_child_setup"]
        if len(ecs) != 1:
            raise Failure(f"cannot find beam.smp's erl_child_setup "
                          f"(children: {kids})")
        self.ecs = ecs[0]
        for p in kids:
            self.procs.add(p, "vm helper")
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
                raise Failure(f"VM clock {v} not within [{b0}, {b1}]: "
                              "clocks not shared")
            worst = max(worst, b1 - b0)
        log(f"clock shared ({self.clock_id}; round trip <= "
            f"{worst / 1e3:.0f} us)")

    def popen_pids(self):
        return {p.pid for p in (self.vm, self.epmd) if p is not None}

    def stop(self):
        """Stop everything this script started, by pid; the pids left."""
        # Workers we may not have heard of yet: erl_child_setup's children.
        if self.ecs and self.procs.live([self.ecs]):
            for p in peerlib.children_of(self.ecs):
                self.procs.add(p)
        if self.vm is not None and self.vm.poll() is None:
            try:
                self.send("stop")
                self.expect("stopped", 30)
                self.vm.wait(30)
            except (Failure, OSError, subprocess.TimeoutExpired) as e:
                log(f"VM did not stop cleanly ({e}); killing it")
                if self.ecs and self.procs.live([self.ecs]):
                    for p in peerlib.children_of(self.ecs):
                        self.procs.add(p)
                self.procs.kill([self.vm.pid])
                try:
                    self.vm.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        # The VM is gone; its ports' workers are left (reparented to us), and
        # anything else that came back to us as subreaper is ours too.
        for p in peerlib.children_of(os.getpid()):
            if p not in self.popen_pids():
                self.procs.add(p, "orphan")
        n = len([p for p, (_, w) in self.procs.procs.items()
                 if w == "worker"])
        left = self.procs.kill([p for p, (_, w) in self.procs.procs.items()
                                if w != "epmd"])
        if self.epmd is not None:
            left += self.procs.kill([self.epmd.pid])
            try:
                self.epmd.wait(5)
            except subprocess.TimeoutExpired:
                pass
        peerlib.reap_orphans(self.popen_pids())
        log(f"stopped: VM, epmd and {n} worker pids seen during the run; "
            f"{len(left)} left")
        return left

    # -- the workloads ------------------------------------------------------

    def rpc_eval(self, expr):
        """argv of one `elixir --rpc-eval` client (a new named node each
        time) evaluating EXPR on our node."""
        self.clients += 1
        return ["elixir", "--name", f"kvq{os.getpid()}_{self.clients}"
                "@127.0.0.1", "--cookie", self.cookie, "--erl",
                LOOPBACK_DIST, "--rpc-eval", self.node, expr]

    def after_client(self):
        """What a client VM leaves behind comes back to us: reap it."""
        peerlib.reap_orphans(self.popen_pids())

    def bringup(self):
        n = self.args.workers
        log(f"bring-up of {n} workers")
        self.send(f"bringup {n}")
        us, ok = map(int, self.expect("bringup", 600))
        self.pids = self.read_pids(self.expect("pids"))
        if ok != n or len(self.pids) != n:
            raise Failure(f"bring-up: {ok} of {n} started")
        for k, p in self.pids.items():
            self.check_worker(p, f"bring-up of {k}")
        emit("bringup_ms", us / 1e3,
             f"in-VM time (:erlang.monotonic_time) of {n} sequential "
             "DynamicSupervisor.start_child calls (each returns after the "
             "GenServer's init opened the Port and stored Port.info(port, "
             ":os_pid) with Registry.update_value) plus one Registry.lookup "
             "pass confirming every key has its OS pid; VM already running "
             f"(BEAM+Elixir boot as a named node: {self.boot_ms:.0f} ms, not "
             "included). Workers are children of erl_child_setup (BEAM's "
             "spawn helper, child of beam.smp), each in its own session")
        log(f"bring-up {us / 1e3:.1f} ms")

    def restarts(self):
        keys = sorted(self.pids)
        random.Random(peerlib.SEED).shuffle(keys)
        lat, polls = [], []
        log(f"{self.args.crashes} crashes")
        for i in range(self.args.crashes):
            k = keys[i % len(keys)]
            old = self.pids[k]
            self.send(f"watch {k} {old}")
            self.expect("ready")
            t0 = time.monotonic_ns()
            os.kill(old, signal.SIGKILL)
            w = self.expect("restarted", 30)
            new, t1 = int(w[1]), int(w[2])
            if w[0] != k or new == old:
                raise Failure(f"restart: bad answer {w}")
            if not peerlib.alive(new):
                raise Failure(f"restart: new pid {new} of {k} is not alive")
            self.check_worker(new, f"restart of {k}")
            self.pids[k] = new
            lat.append((t1 - t0) / 1e3)
            polls.append(int(w[3]))
        peerlib.emit_restarts(
            lat, 0,
            "SIGKILL of the worker's OS pid by this Python script (os.kill; "
            "t0 = CLOCK_MONOTONIC just before it) until a BEAM process "
            "polling Registry.lookup(Reg, key) (with :erlang.yield() between "
            "lookups: a poller that never yields held up the restart ~10x on "
            "a busy 2-core machine) sees a new OS pid and "
            "File.exists?(/proc/PID) (t1 = :os.perf_counter(:nanosecond), "
            f"checked to be the same {self.clock_id} as Python's "
            "time.monotonic_ns); new pid re-checked with kill(pid,0) "
            "afterwards. Path: port exit_status -> GenServer stops "
            "{:shutdown, _} -> DynamicSupervisor restarts at once (no "
            "backoff in OTP; max_restarts 1000000 per 1 s so crashes never "
            "kill it) -> new Port via erl_child_setup -> "
            f"Registry.update_value. {len(lat)} crashes round-robin over "
            f"shuffled keys, one at a time; median {median(polls):.0f} "
            "lookups per restart")

    def lookup_program(self):
        n = self.args.lookups
        log(f"{n} Registry.lookup calls")
        self.send(f"lookup {n}")
        us, count, bad = map(int, self.expect("lookup", 600))
        if bad:
            raise Failure(f"lookup: {bad} of {count} wrong")
        emit("lookup_program_us", us / count,
             "Registry.lookup(Reg, key) -> [{gen_server_pid, os_pid}] inside "
             "the VM (one BEAM process, an ETS lookup in a 1-partition "
             f":unique Registry), {count} random keys, each result compared "
             "with the expected OS pid; :timer.tc over the whole loop / "
             f"{count}")

    def lookup_shell(self):
        runs = self.args.shell_runs
        log(f"up to {runs} elixir --rpc-eval runs")
        times = peerlib.time_shell_lookups(
            runs, sorted(self.pids),
            lambda k: self.rpc_eval(f"[{{_, p}}] = Registry.lookup("
                                    f"KVBench.Reg, \"{k}\"); IO.puts(p)"),
            self.pids, env=self.env, cwd=self.tmp, give_up=SHELL_GIVE_UP,
            after_each=self.after_client)
        capped = (f"; stopped after {len(times)} of {runs} runs because the "
                  "median was over 2 s" if len(times) < runs else "")
        emit("lookup_shell_us", median(times),
             f"median of {len(times)} runs over random keys, each timed "
             "around the whole process (peerlib.time_command): `elixir "
             f"--name q@127.0.0.1 --cookie C --erl '{LOOPBACK_DIST}' "
             f"--rpc-eval {self.node} '[{{_, p}}] = "
             "Registry.lookup(KVBench.Reg, KEY); IO.puts(p)'` (a new BEAM VM "
             "as a named node, distributed Erlang over loopback via a "
             f"private epmd); output checked{capped}")

    def remove_extra(self, pid):
        """DynamicSupervisor.terminate_child of `extra` (which closes its
        Port; bench-worker ignores its stdin closing), then SIGTERM to its
        OS pid from this script."""
        self.send("remove")
        (removed,) = map(int, self.expect("removed"))
        if removed != pid:
            raise Failure(f"remove: VM removed {removed}, expected {pid}")
        if self.procs.kill([pid]):
            raise Failure(f"extra's worker {pid} did not exit")

    def add_worker(self):
        """Workload 4, from the shell: one `elixir --rpc-eval` process that
        calls start_child, as the shell lookup calls Registry.lookup."""
        log(f"add from the shell: {ADD_RUNS} elixir --rpc-eval runs")
        expr = ("{:ok, _} = DynamicSupervisor.start_child(KVBench.Sup, "
                "{KVBench.Worker, {\"extra\", "
                f"{elixir_string(str(self.worker))}}}}}); "
                "[{_, p}] = Registry.lookup(KVBench.Reg, \"extra\"); "
                "IO.puts(p)")
        times = []
        for _ in range(ADD_RUNS):
            r = peerlib.time_command(self.rpc_eval(expr), env=self.env,
                                     cwd=self.tmp)
            self.after_client()
            if r.rc != 0 or not r.out.strip().isdigit():
                raise Failure(f"elixir --rpc-eval start_child: exit {r.rc}, "
                              f"printed {r.out.strip()[:100]!r}, stderr "
                              f"{r.err.strip()[-200:]!r}")
            pid = int(r.out)
            self.check_worker(pid, "add from the shell")
            times.append(r.us / 1e3)
            self.remove_extra(pid)
        emit("add_worker_ms", median(times),
             f"median of {ADD_RUNS}, with {self.args.workers} workers "
             "running: the wall time (peerlib.time_command) of one `elixir "
             "--name q@127.0.0.1 ... --rpc-eval NODE '{:ok, _} = "
             "DynamicSupervisor.start_child(KVBench.Sup, {KVBench.Worker, "
             "{\"extra\", WORKER}}); [{_, p}] = Registry.lookup(KVBench.Reg, "
             "\"extra\"); IO.puts(p)'` process (a new BEAM VM, as for "
             "lookup_shell_us; start_child returns once init has stored the "
             "OS pid), its printed pid checked; between runs "
             "DynamicSupervisor.terminate_child, then SIGTERM to the OS pid "
             "(untimed). " + peerlib.runs_note(times, "{:.0f}"))
        log(f"add (shell): {median(times):.0f} ms")

    def add_worker_api(self):
        """Workload 4, from a program: start_child inside the VM."""
        log(f"add inside the VM: {ADD_RUNS} start_child calls")
        times = []
        for _ in range(ADD_RUNS):
            self.send("add")
            us, pid = map(int, self.expect("add"))
            self.check_worker(pid, "add")
            times.append(us / 1e3)
            self.remove_extra(pid)
        emit("add_worker_api_ms", median(times),
             f"median of {ADD_RUNS}: in-VM time of "
             "DynamicSupervisor.start_child for key 'extra' (returns after "
             "init stored the OS pid) plus a Registry.lookup confirming it, "
             f"with {self.args.workers} workers running; removed between "
             "runs as for add_worker_ms. "
             + peerlib.runs_note(times, "{:.3f}"))
        log(f"add (API): {median(times):.3f} ms")

    def memory(self):
        self.send("mem")
        total, nproc, nports = map(int, self.expect("mem"))
        pids = [self.vm.pid] + peerlib.children_of(self.vm.pid) \
            + [self.epmd.pid]
        pss = {p: peerlib.smaps_rollup(p)["Pss"] for p in pids}
        parts = ", ".join(f"{peerlib.comm(p)}[{p}] {v}"
                          for p, v in pss.items())
        peerlib.emit_memory(
            pids,
            f"Pss sum over {parts} KiB (epmd started by this script on a "
            "private port; a VM would start its own otherwise), with "
            f"{self.args.workers} workers running; in-VM "
            f":erlang.memory(:total) = {total // 1024} KiB, {nproc} BEAM "
            f"processes, {nports} ports",
            "beam.smp, its non-worker child processes ("
            + ", ".join(str(peerlib.comm(p)) for p in pids[1:-1])
            + ") and epmd")

    def run(self):
        self.start()
        emit("version", None,
             f"Elixir {self.elixir_v} on Erlang/OTP {self.otp} (erts "
             f"{self.erts}); Registry (keys: :unique, 1 partition) + "
             "DynamicSupervisor (one_for_one, max_restarts 1000000 in "
             "max_seconds 1, so the benchmark's crashes never exceed its "
             "restart intensity) + GenServer (restart: :permanent, {:via, "
             "Registry, ...}) per key owning a Port ({:spawn_executable, "
             "worker}, [:binary, :exit_status]) that runs the worker "
             "directly (no shell); the GenServer stops with {:shutdown, "
             "{:exit_status, S}} when the worker exits (no crash log; "
             "DynamicSupervisor's child_terminated report is an OTP/SASL "
             "report that Elixir's Logger drops by default). Worker "
             "stdin/stdout are pipes to the VM (bench-worker uses neither), "
             "stderr the VM's (to a log file). One VM: `elixir --name "
             "kvbench_PID@127.0.0.1 --cookie RANDOM --erl "
             f"'{LOOPBACK_DIST}' peer_elixir.exs`, with a private epmd "
             "(-address 127.0.0.1, own ERL_EPMD_PORT) started and stopped by "
             "this script; driven over a line protocol on the VM's "
             "stdin/stdout")
        self.bringup()
        self.restarts()
        self.lookup_program()
        self.lookup_shell()
        self.add_worker()
        self.add_worker_api()
        self.memory()


if __name__ == "__main__":
    sys.exit(peerlib.main(Elixir))
