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
