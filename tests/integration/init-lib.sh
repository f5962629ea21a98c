# Helpers for the container-init tests, sourced by test_init.sh and by
# tests/init-vs-tini.sh: run an init (keyvisord or tini) as PID 1 of a new
# PID namespace, in the background, and wait for it with a deadline.
#
#   ns_start LOG INIT [ARG...]   unshare --pid --fork --mount-proc INIT...
#                                sets NS_U (unshare) and NS_P1 (PID 1, as
#                                seen from here); output goes to LOG
#   ns_wait SECONDS              wait for it; SIGKILL its PID 1 after
#                                SECONDS; sets NS_STATUS, and NS_MS (ms
#                                since ns_mark)
#   ns_cleanup                   SIGKILL a namespace still running, reap it
#
# One namespace at a time.  Only processes started here are signalled, by
# pid: PID 1 of the namespace (whose death takes every process in it), and
# nothing else.  unshare is a child of this shell and is always waited for,
# so it never ends up a zombie of the host's init.
# shellcheck disable=SC2034 # NS_STATUS and NS_MS are for the caller
NS_U=""
NS_P1=""
NS_STATUS=""
NS_MS=""
NS_T0=0

ns_now() { date +%s%3N; }
ns_mark() { NS_T0=$(ns_now); }
ns_gone() { # PID: not running (gone, or a zombie)
	[ "$(awk '{ s = $0; sub(/^.*\) /, "", s); print substr(s, 1, 1) }' \
	    "/proc/$1/stat" 2>/dev/null)" = Z ] || ! kill -0 "$1" 2>/dev/null
}
ns_sleep_until() { # SECONDS COMMAND...: poll every 20 ms
	_n=$(awk -v s="$1" 'BEGIN { printf "%d", s * 50 }')
	shift
	while ! "$@" >/dev/null 2>&1; do
		_n=$((_n - 1))
		[ "$_n" -le 0 ] && return 1
		sleep 0.02
	done
}

ns_start() { # LOG INIT [ARG...]
	_log=$1
	shift
	NS_P1=""
	# --kill-child: if unshare is killed (a test timeout), so is PID 1,
	# and with it the whole namespace.  env --default-signal: PID 1 starts
	# with no signal ignored, as a container runtime starts it, not with
	# the SIGINT and SIGQUIT a shell ignores for "cmd &".
	env --default-signal \
	    unshare --pid --fork --kill-child --mount-proc "$@" >>"$_log" 2>&1 &
	NS_U=$!
	# unshare forks PID 1 at once; it is the only child.
	_i=0
	while [ -z "$NS_P1" ] && [ $_i -lt 250 ]; do
		NS_P1=$(cat "/proc/$NS_U/task/$NS_U/children" 2>/dev/null)
		NS_P1=${NS_P1%% *}
		[ -n "$NS_P1" ] || sleep 0.02
		_i=$((_i + 1))
	done
	[ -n "$NS_P1" ]
}

ns_wait() { # SECONDS
	# Every 5 ms for the first second, so that NS_MS means something.
	_i=0
	while [ $_i -lt 200 ] && ! ns_gone "$NS_U"; do
		sleep 0.005
		_i=$((_i + 1))
	done
	if ! ns_sleep_until "$1" ns_gone "$NS_U"; then
		[ -n "$NS_P1" ] && kill -KILL "$NS_P1" 2>/dev/null
	fi
	wait "$NS_U"
	NS_STATUS=$?
	NS_MS=$(($(ns_now) - NS_T0))
	NS_U=""
	NS_P1=""
}

ns_cleanup() {
	[ -n "$NS_U" ] || return 0
	[ -n "$NS_P1" ] && kill -KILL "$NS_P1" 2>/dev/null
	wait "$NS_U" 2>/dev/null
	NS_U=""
	NS_P1=""
}

# Readings of /proc/PID: a field of status (SigBlk, SigIgn...), the
# signals pending on PID (SigPnd and ShdPnd that are not zero, or 0), its
# CPU time in clock ticks.
ns_status_field() { # PID FIELD
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
ns_pending() { # PID: the signals pending on it, or 0
	awk '$1 == "SigPnd:" || $1 == "ShdPnd:" { if ($2 !~ /^0+$/) p = p $2 " " }
	    END { print p == "" ? 0 : p }' "/proc/$1/status"
}
ns_cpu_ticks() { # PID: utime + stime
	awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " ");
	    print f[12] + f[13] }' "/proc/$1/stat"
}
