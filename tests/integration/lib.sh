# Integration test harness: each test file gets its own instance, socket
# directory and daemon, prints TAP, and cleans up only what it started
# (the daemon by pid; its workers die with it by PDEATHSIG, and are also
# killed by pid from the daemon's own listing first).
#
#   . "$KV_SRC/tests/integration/lib.sh"
#   kv_daemon_start            # keyvisord in the background, waits for it
#   t_exit 0 "start prints a pid" kv start user:1 -- "$KV_WORKER"
#   ...
#   t_done
set -u

: "${KV_BUILD:?KV_BUILD must name the build directory}"
KEYVISORD="$KV_BUILD/supervisord/keyvisord"
KEYVISOR="$KV_BUILD/supervisord/keyvisor"
KV_WORKER="$KV_BUILD/worker/kv-worker"

T_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kv-test.XXXXXX")
T_N=0
T_FAILED=0
KV_INSTANCE="t$$"
export KEYVISOR_SOCKET="$T_DIR/kv.sock"
export KEYVISOR_INSTANCE="$KV_INSTANCE"
unset KEYVISOR_REGISTRY
DPID=""

kv() { "$KEYVISOR" "$@"; }

t_ok() { # DESCRIPTION: report a pass
	T_N=$((T_N + 1))
	echo "ok $T_N - $1"
}

t_fail() { # DESCRIPTION [DETAIL]
	T_N=$((T_N + 1))
	T_FAILED=$((T_FAILED + 1))
	echo "not ok $T_N - $1"
	[ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/# /'
	return 0
}

t_check() { # DESCRIPTION COMMAND...: passes if the command succeeds
	d=$1
	shift
	if "$@" >"$T_DIR/out" 2>&1; then t_ok "$d"; else
		t_fail "$d" "$(cat "$T_DIR/out")"
	fi
}

t_eq() { # EXPECTED ACTUAL DESCRIPTION
	if [ "$1" = "$2" ]; then t_ok "$3"; else
		t_fail "$3" "expected '$1', got '$2'"
	fi
}

# t_exit CODE DESCRIPTION COMMAND...: the command exits CODE; its stdout is
# left in $T_OUT and its stderr in $T_ERR.
t_exit() {
	want=$1 d=$2
	shift 2
	"$@" >"$T_DIR/stdout" 2>"$T_DIR/stderr"
	got=$?
	T_OUT=$(cat "$T_DIR/stdout")
	T_ERR=$(cat "$T_DIR/stderr")
	if [ "$got" -eq "$want" ]; then t_ok "$d"; else
		t_fail "$d" "exit $got, wanted $want; stderr: $T_ERR"
	fi
}

# Wait until COMMAND succeeds, polling every 50 ms for about SECONDS.
t_until() { # SECONDS COMMAND...
	n=$(awk -v l="$1" 'BEGIN { printf "%d", l * 20 }')
	shift
	while ! "$@" >/dev/null 2>&1; do
		n=$((n - 1))
		[ "$n" -le 0 ] && return 1
		sleep 0.05
	done
	return 0
}

alive() { kill -0 "$1" 2>/dev/null && ! is_zombie "$1"; }
is_zombie() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }

kv_daemon_start() { # [keyvisord options...]
	"$KEYVISORD" "$@" >>"$T_DIR/daemon.log" 2>&1 &
	DPID=$!
	if ! t_until 5 test -S "$KEYVISOR_SOCKET"; then
		echo "Bail out! keyvisord did not start: $(cat "$T_DIR/daemon.log")"
		exit 1
	fi
}

# Stop the daemon (it stops its workers); SIGKILL it after 10 s.
kv_daemon_stop() {
	[ -n "$DPID" ] || return 0
	kill -TERM "$DPID" 2>/dev/null
	i=0
	while alive "$DPID" && [ $i -lt 200 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	kill -KILL "$DPID" 2>/dev/null
	wait "$DPID" 2>/dev/null
	DAEMON_STATUS=$?
	DPID=""
}

t_cleanup() {
	kv_daemon_stop
	rm -rf "$T_DIR"
}
trap t_cleanup EXIT
trap 'exit 1' INT TERM

t_done() {
	echo "1..$T_N"
	[ "$T_FAILED" -eq 0 ]
}

# ---- More helpers (added for test_cli.sh; usable by every test file) ----

# t_skip DESCRIPTION REASON: a TAP skip, counted as a pass.
t_skip() {
	T_N=$((T_N + 1))
	echo "ok $T_N - $1 # SKIP $2"
}

# Milliseconds since the epoch, for "answered promptly" checks.
t_ms() { date +%s%3N; }

# is_pid STRING: STRING is a positive decimal number and nothing else.
is_pid() {
	case $1 in '' | 0 | *[!0-9]*) return 1 ;; esac
	return 0
}

# dead PID...: none of the processes is alive (zombies count as dead).
dead() {
	for _kv_p in "$@"; do
		alive "$_kv_p" && return 1
	done
	return 0
}

# The process group of PID, from /proc (the comm field may hold spaces).
kv_pgid() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $3 }'; }

# kv_environ PID NAME: print NAME's value in PID's initial environment;
# fails if NAME is not set there.
kv_environ() {
	tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | awk -v n="$2=" '
	    index($0, n) == 1 { print substr($0, length(n) + 1); f = 1; exit }
	    END { exit !f }'
}

# kv_json EXPR: evaluate the Python expression EXPR with j bound to the
# JSON document read from stdin, and print the result (strings bare, other
# values as JSON).  Fails on invalid JSON or when EXPR raises.
kv_json() {
	python3 -c '
import json, sys
j = json.load(sys.stdin)
v = eval(sys.argv[1], {"j": j})
print(v if isinstance(v, str) else json.dumps(v))
' "$1"
}

# kv_raw [LINES]: send stdin's bytes as they are to the control socket and
# print each reply line; stop after LINES lines if given.  Prints "#EOF" if
# the daemon closed the connection first, "#TIMEOUT" after 5 s of waiting.
kv_raw() {
	python3 -c '
import socket, sys, time
want = int(sys.argv[2]) if sys.argv[2] else -1
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
try:
    s.sendall(sys.stdin.buffer.read())
except (BrokenPipeError, ConnectionResetError):
    pass
buf, got, end = b"", 0, time.monotonic() + 5
while want < 0 or got < want:
    left = end - time.monotonic()
    if left <= 0:
        print("#TIMEOUT")
        break
    s.settimeout(left)
    try:
        b = s.recv(65536)
    except socket.timeout:
        continue
    except ConnectionResetError:
        b = b""
    if not b:
        print("#EOF")
        break
    buf += b
    while b"\n" in buf and (want < 0 or got < want):
        line, buf = buf.split(b"\n", 1)
        print(line.decode("utf-8", "replace"))
        got += 1
sys.stdout.flush()
' "$KEYVISOR_SOCKET" "${1:-}"
}

# kv_as_nobody COMMAND...: run COMMAND as uid/gid 65534 with no
# supplementary groups, keeping the environment.  Fails with status 125
# when that is impossible (not root, no setpriv nor runuser).
kv_as_nobody() {
	[ "$(id -u)" -eq 0 ] || return 125
	if command -v setpriv >/dev/null 2>&1; then
		setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
	elif command -v runuser >/dev/null 2>&1; then
		runuser -u "$(getent passwd 65534 | cut -d: -f1)" -- "$@"
	else
		return 125
	fi
}

# Wait until the daemon $DPID answers on the control socket (a daemon
# started over a dead predecessor's socket: test -S is no sign of life).
kv_daemon_ready() {
	t_until "${1:-5}" sh -c \
	    '"$1" info --json 2>/dev/null | grep -q "\"pid\": *$2[,}]"' _ \
	    "$KEYVISOR" "$DPID"
}

# Wait up to SECONDS (default 10) for the daemon to exit by itself, then
# SIGKILL it; its exit status goes to $DAEMON_STATUS (137 if killed).
kv_daemon_wait() {
	[ -n "$DPID" ] || return 0
	_kv_n=$(awk -v l="${1:-10}" 'BEGIN { printf "%d", l * 20 }')
	while alive "$DPID" && [ "$_kv_n" -gt 0 ]; do
		sleep 0.05
		_kv_n=$((_kv_n - 1))
	done
	kill -KILL "$DPID" 2>/dev/null
	wait "$DPID" 2>/dev/null
	DAEMON_STATUS=$?
	DPID=""
}

# Stop the daemon with "keyvisor shutdown" and wait for it to exit, setting
# $DAEMON_STATUS (SIGTERM instead if the request fails).  Returns the
# status of "keyvisor shutdown".
kv_daemon_shutdown() {
	[ -n "$DPID" ] || return 0
	"$KEYVISOR" shutdown >/dev/null 2>&1
	_kv_s=$?
	[ "$_kv_s" -eq 0 ] || kill -TERM "$DPID" 2>/dev/null
	kv_daemon_wait 10
	return "$_kv_s"
}

# Passes if the daemon's log holds no sanitizer (ASan, LSan, UBSan) report.
kv_daemon_log_clean() {
	! grep -E 'ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error:|SUMMARY: [A-Za-z]+Sanitizer' \
	    "$T_DIR/daemon.log"
}
