#!/usr/bin/env python3
"""Compare keyvisor with supervisord, s6, runit and Elixir on this machine.

    python3 tests/bench/peers/peers.py [--workers 1000] [--crashes 1000]
        [--peer-crashes 1000] [--shell-runs 50] [--lookups 100000]
        [--only keyvisor,s6,...] [--no-install] [--markdown FILE]
        [--build DIR] [--timeout SECONDS]

Installs the peers' Debian packages that are missing, makes sure the build
has what the benchmark runs, prints the machine and the floor of the shell
lookups (/bin/true timed as they are), runs each peer's script
(peer_<name>.py in this folder, see README.md) in turn with a fresh
temporary directory, and prints one table: a row per metric, a column per
peer, and next to each peer its ratio to keyvisor; then every note in
full. --markdown writes the same as Markdown. Python 3 stdlib only.
"""

import argparse
import collections
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import peerlib  # noqa: E402

HERE, SRC = peerlib.HERE, peerlib.SRC

PEERS = ["keyvisor", "supervisord", "s6", "runit", "elixir"]

# The Debian packages each peer needs.
PACKAGES = {
    "keyvisor": [],
    "supervisord": ["supervisor"],
    "s6": ["s6", "libs6-dev", "skalibs-dev"],  # the probe needs all three
    "runit": ["runit"],
    "elixir": ["elixir"],
}

# The table's rows: metric, and what it is. Lower is better for all.
ROWS = [
    ("bringup_ms", "bring-up of N workers, ms"),
    ("restart_p50_us", "restart after SIGKILL, p50, us"),
    ("restart_p99_us", "restart after SIGKILL, p99, us"),
    ("lookup_shell_us", "lookup by a CLI process, us"),
    ("lookup_program_us", "lookup from a program, us"),
    ("add_worker_ms", "add one worker from the shell, ms"),
    ("add_worker_api_ms", "add one worker from a program, ms"),
    ("mem_kib", "supervisor memory (Pss), KiB"),
    ("mem_procs", "supervisor processes"),
]
# Metrics a peer reports beside the rows, listed after the table.
EXTRA = ["restart_max_us", "restart_n", "rss_main_kib"]

STOP_WAIT = 60  # seconds a peer script gets to clean up after SIGTERM


def log(msg):
    print(f"peers: {msg}", file=sys.stderr, flush=True)


class Fatal(Exception):
    """Something the whole run needs is missing."""


class Interrupted(Exception):
    """SIGINT or SIGTERM reached the driver."""


# -- preparation ----------------------------------------------------------


def installed(pkg):
    """Is the Debian package PKG installed (dpkg-query)?"""
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg],
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() == "installed"


def ensure_packages(peers, no_install):
    """apt-get install -y the packages of PEERS that are missing."""
    want = [p for peer in peers for p in PACKAGES[peer]]
    if not want:
        return
    if shutil.which("dpkg-query") is None:
        if no_install:
            return
        raise Fatal("dpkg-query not found: not a Debian system? Install "
                    f"{' '.join(want)} yourself and pass --no-install")
    missing = [p for p in want if not installed(p)]
    if not missing:
        log(f"packages present: {' '.join(want)}")
        return
    if no_install:
        log(f"--no-install: missing packages left alone: {' '.join(missing)}")
        return
    if os.geteuid() == 0:
        sudo = []
    elif shutil.which("sudo"):
        sudo = ["sudo"]
    else:
        raise Fatal(f"packages missing: {' '.join(missing)}; installing "
                    "them needs root or sudo (or pass --no-install and "
                    "drop those peers with --only)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"installing {' '.join(missing)}")
    cmd = sudo + ["apt-get", "install", "-y", *missing]
    if subprocess.run(cmd, env=env).returncode != 0:
        log("apt-get install failed; apt-get update and once more")
        subprocess.run(sudo + ["apt-get", "update"], env=env)
        if subprocess.run(cmd, env=env).returncode != 0:
            raise Fatal(f"apt-get install -y {' '.join(missing)} failed")


def ensure_build(build):
    """The build has keyvisord, keyvisor, libkvshm.a and bench-worker;
    ninja builds them if it can. Returns the worker's path."""
    needed = [build / "supervisord" / "keyvisord",
              build / "supervisord" / "keyvisor",
              build / "shm" / "libkvshm.a",
              build / "tests" / "bench" / "bench-worker"]
    if all(p.exists() for p in needed):
        return needed[-1]
    if not (build / "build.ninja").exists() or not shutil.which("ninja"):
        raise Fatal(f"{build} is not a configured build; run: meson setup "
                    f"{build} && ninja -C {build}")
    log(f"building: ninja -C {build}")
    if subprocess.run(["ninja", "-C", str(build)]).returncode != 0:
        raise Fatal(f"ninja -C {build} failed")
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise Fatal(f"still missing after the build: {', '.join(missing)}")
    return needed[-1]


def machine_facts(runs):
    """[(name, value)] describing this machine and now, and the floor of
    the shell lookups: /bin/true timed RUNS times as they are."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    return [
        ("date", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("cpu", cpu),
        ("cores", str(os.cpu_count())),
        ("memory", mem),
        ("kernel", platform.uname().release),
        ("python", platform.python_version()),
        ("a process that does nothing",
         f"{peerlib.floor_us(runs):.0f} us (/bin/true timed as every shell "
         f"lookup is, by peerlib.time_command; median of {runs})"),
    ]


def machine_line(facts):
    return "Machine: " + "; ".join(f"{k}: {v}" for k, v in facts)


# -- running one peer -----------------------------------------------------


class Result:
    """What one peer script reported."""

    def __init__(self, peer):
        self.peer = peer
        self.values = {}  # metric -> number or None
        self.notes = {}  # metric -> note
        self.version = None
        self.failed = None  # None, or why the script failed
        self.elapsed = 0.0


class PeerRun:
    """One peer script as a child in its own session, its stdout parsed
    and its stderr passed through (prefixed), the last lines kept."""

    def __init__(self, peer, argv, timeout):
        self.result = Result(peer)
        self.argv = argv
        self.timeout = timeout
        self.tail = collections.deque(maxlen=8)
        self.proc = None

    def _read_stderr(self):
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.tail.append(line)
            print(f"  [{self.result.peer}] {line}", file=sys.stderr,
                  flush=True)

    def _read_stdout(self):
        r = self.result
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
                metric = obj["metric"]
            except (ValueError, KeyError, TypeError):
                self.tail.append(f"(not a result line: {line[:100]})")
                continue
            if metric == "version":
                r.version = obj.get("note") or ""
                continue
            value = obj.get("value")
            if value is not None and not isinstance(value, (int, float)):
                self.tail.append(f"(not a number for {metric}: {value!r})")
                value = None
            r.values[metric] = value
            if obj.get("note"):
                r.notes[metric] = obj["note"]

    def stop(self):
        """SIGTERM the script (it stops what it started), then SIGKILL its
        process group if it has not exited within STOP_WAIT."""
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            log(f"{self.result.peer}: did not exit after SIGTERM; killing "
                f"its process group {p.pid}")
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()

    def run(self):
        r = self.result
        t0 = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, start_new_session=True)
            readers = [threading.Thread(target=self._read_stderr,
                                        daemon=True),
                       threading.Thread(target=self._read_stdout,
                                        daemon=True)]
            for t in readers:
                t.start()
            try:
                rc = self.proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.stop()
                rc = None
            # The pipes close when the script has exited, unless something
            # it started still holds them: do not wait for that forever.
            for t in readers:
                t.join(timeout=10)
            if any(t.is_alive() for t in readers):
                log(f"{r.peer}: a process it started still holds its "
                    "output open")
            if rc is None:
                r.failed = f"timed out after {self.timeout} s"
            elif rc != 0:
                why = next((s for s in reversed(self.tail) if s.strip()),
                           "no message")
                r.failed = f"exit {rc}: {why}"
        except Interrupted:
            # A second ^C must not cut the clean-up short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.stop()
            raise
        finally:
            r.elapsed = time.monotonic() - t0
        return r


def run_peer(peer, args, worker):
    """Run peer_<peer>.py with a fresh temporary directory; a Result."""
    script = HERE / f"peer_{peer}.py"
    if not script.exists():
        r = Result(peer)
        r.failed = f"{script.name} not found"
        return r
    crashes = args.crashes if peer == "keyvisor" else args.peer_crashes
    tmp = tempfile.mkdtemp(prefix=f"kvpeer-{peer}-")
    argv = [sys.executable, str(script), "--workers", str(args.workers),
            "--crashes", str(crashes), "--shell-runs", str(args.shell_runs),
            "--lookups", str(args.lookups), "--worker", str(worker),
            "--tmp", tmp, "--build", str(args.build)]
    log(f"{peer}: {' '.join(argv[1:])}")
    try:
        r = PeerRun(peer, argv, args.timeout).run()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"{peer}: {'failed: ' + r.failed if r.failed else 'done'} "
        f"in {r.elapsed:.1f} s")
    return r


# -- the table ------------------------------------------------------------


def fmt(v):
    """A figure with sensible precision: 12,345 / 123 / 12.3 / 1.23 /
    0.0123."""
    if v is None:
        return "n/a"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if float(v).is_integer():
        return f"{int(v)}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def cell(r, metric):
    """The table cell of result R for METRIC."""
    if metric in r.values:
        return fmt(r.values[metric])
    return "failed" if r.failed else "-"


def ratio(r, kv, metric):
    """How many times keyvisor's figure is better: peer / keyvisor."""
    a, b = r.values.get(metric), kv.values.get(metric)
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{fmt(a / b)}x"


def table(results):
    """The header and the rows of the table, as lists of cells."""
    kv = next((r for r in results if r.peer == "keyvisor"), None)
    head = ["metric"]
    for r in results:
        head.append(r.peer)
        if kv is not None and r is not kv:
            head.append(f"{r.peer}/kv")
    rows = []
    for metric, _ in ROWS:
        row = [metric]
        for r in results:
            row.append(cell(r, metric))
            if kv is not None and r is not kv:
                row.append(ratio(r, kv, metric))
        rows.append(row)
    return head, rows


def text_table(head, rows):
    """Aligned plain text: the first column left, the figures right."""
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def md_table(head, rows):
    """A Markdown (GFM) table, figures right-aligned."""
    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(head),
           "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def extras(r):
    """The other figures of R, as one line."""
    got = [f"{m} {fmt(r.values[m])}" for m in EXTRA if m in r.values]
    return ", ".join(got) if got else "none"


def sections(results, total):
    """What follows the table, the same in text and in Markdown: [(title,
    [(label, text)])], the notes last and in full, one per metric."""
    out = [("Failed", [(r.peer, r.failed) for r in results if r.failed]),
           ("Versions", [(r.peer, r.version or "unknown") for r in results]),
           ("Elapsed", [(r.peer, f"{r.elapsed:.0f} s") for r in results]
            + [("total", f"{total:.0f} s")]),
           ("Other figures", [(r.peer, extras(r)) for r in results])]
    for r in results:
        out.append((f"Notes: {r.peer}", list(r.notes.items())))
    return [(title, items) for title, items in out if items]


def headline(args):
    return (f"{args.workers} workers; keyvisor {args.crashes} crashes, the "
            f"peers {args.peer_crashes}; {args.shell_runs} shell lookups; "
            f"{args.lookups} program lookups (or fewer where a note says so)."
            " Lower is better in every row; peer/kv is the peer's figure "
            "divided by keyvisor's.")


def report(results, facts, args, total):
    """Print the table and every note in full; write the Markdown if
    asked."""
    head, rows = table(results)
    print()
    print("Peer comparison: " + headline(args))
    print(machine_line(facts) + ".")
    print()
    print(text_table(head, rows))
    for title, items in sections(results, total):
        print()
        print(f"{title}:")
        for label, text in items:
            print(f"  {label}: {text}")
    if args.markdown:
        write_markdown(args.markdown, head, rows, results, facts, args,
                       total)
        log(f"wrote {args.markdown}")


def write_markdown(path, head, rows, results, facts, args, total):
    """The same as a Markdown document section."""
    cmd = ("python3 tests/bench/peers/peers.py"
           + "".join(f" {a}" for a in sys.argv[1:]))
    out = ["## keyvisor and its peers", "",
           f"`{cmd}`: " + headline(args), "",
           machine_line(facts) + ".", "",
           md_table(head, rows)]
    for title, items in sections(results, total):
        out += ["", f"### {title}", ""]
        out += [f"- `{label}`: {text}" if title.startswith("Notes")
                else f"- {label}: {text}" for label, text in items]
    Path(path).write_text("\n".join(out) + "\n")


# -- main -----------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(
        description="Compare keyvisor with supervisord, s6, runit and "
        "Elixir; see README.md in this folder.")
    p.add_argument("--workers", type=int, default=1000,
                   help="keyed workers each supervisor runs (1000)")
    p.add_argument("--crashes", type=int, default=1000,
                   help="crashes timed for keyvisor (1000)")
    p.add_argument("--peer-crashes", type=int, default=1000,
                   help="crashes timed for each peer (1000, as for keyvisor, "
                   "so that the p99s compare)")
    p.add_argument("--shell-runs", type=int, default=50,
                   help="runs of each shell lookup command (50)")
    p.add_argument("--lookups", type=int, default=100000,
                   help="lookups from a program (100000)")
    p.add_argument("--only", default=",".join(PEERS),
                   help="comma-separated subset of " + ",".join(PEERS))
    p.add_argument("--no-install", action="store_true",
                   help="do not install missing Debian packages")
    p.add_argument("--markdown", metavar="FILE",
                   help="also write the table as a Markdown section")
    p.add_argument("--build", type=Path, default=SRC / "build",
                   help="keyvisor's build directory (%(default)s)")
    p.add_argument("--timeout", type=int, default=600,
                   help="seconds one peer script may take (600)")
    a = p.parse_args()
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = [s for s in a.only if s not in PEERS]
    if unknown or not a.only:
        p.error(f"--only: unknown peer {', '.join(unknown) or '(none)'}; "
                f"choose from {','.join(PEERS)}")
    a.only = [s for s in PEERS if s in a.only]  # keyvisor first
    for name in ("workers", "crashes", "peer_crashes", "shell_runs",
                 "lookups", "timeout"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    a.build = a.build.resolve()
    return a


def on_signal(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def main():
    args = parse_args()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        ensure_packages(args.only, args.no_install)
        worker = ensure_build(args.build)
    except Fatal as e:
        print(f"peers: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"peers: interrupted ({e})", file=sys.stderr)
        return 130
    facts = machine_facts(args.shell_runs)
    print(machine_line(facts), flush=True)
    t0 = time.monotonic()
    results = []
    try:
        for peer in args.only:
            results.append(run_peer(peer, args, worker))
            print(f"{peer}: {results[-1].elapsed:.1f} s"
                  + (f" (failed: {results[-1].failed})"
                     if results[-1].failed else ""), flush=True)
    except Interrupted as e:
        print(f"peers: interrupted ({e}); the peer in progress was "
              "stopped", file=sys.stderr)
        return 130
    report(results, facts, args, time.monotonic() - t0)
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
