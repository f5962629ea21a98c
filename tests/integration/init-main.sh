#!/bin/sh
# The main command of the container-init tests (test_init.sh and
# tests/init-vs-tini.sh): run under keyvisord or tini, usually as PID 1 of a
# new PID namespace.  It reports into DIR, a directory the caller reads:
# files appear whole (written, then renamed), so a caller polling for one
# never reads half of it.
#
#   init-main.sh record DIR STATUS   write each forwarded signal to DIR/rec,
#                                    one name a line; exit STATUS on TERM;
#                                    ignore ALRM, PIPE and SIGRTMIN+3
#   init-main.sh storm DIR N         orphan N short-lived grandchildren, wait
#                                    for them to end, report the zombies
#   init-main.sh ppid DIR            orphan grandchildren, report who adopted
#                                    one of them and keyvisor info
#   init-main.sh workers DIR STATUS wait|exit
#                                    start keyed workers with the CLI, then
#                                    wait for TERM or exit at once, STATUS
#   init-main.sh ignore-term DIR     ignore SIGTERM; wait forever
#
# It needs KV_WORKER (the example worker) and, for keyvisord's side,
# KV_KEYVISOR (the CLI) in the environment; keyvisord itself provides
# KEYVISOR_SOCKET.
# shellcheck disable=SC2046 # set -- $(census) splits "Z L" on purpose
set -u
mode=$1 dir=$2
shift 2

put() { # FILE TEXT: write TEXT to DIR/FILE whole
	printf '%s\n' "$2" >"$dir/.$1.tmp" && mv "$dir/.$1.tmp" "$dir/$1"
}

# Wait for a signal without blocking its delivery: the shell runs traps
# only between commands, and "wait" is interrupted by a trapped signal.
idle() {
	while :; do
		sleep 1 &
		wait $! 2>/dev/null
	done
}

# "Z L": the zombies in this PID namespace, and the live kv-worker
# processes.  The state is the field after the last ')' (comm may hold
# spaces).  cat, unlike mawk, goes on past a process that vanished.
census() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk '
	{
		s = $0
		sub(/^.*\) /, "", s)
		split(s, f, " ")
		if (f[1] == "Z")
			z++
		else if (index($0, "(kv-worker)"))
			l++
	}
	END { print z + 0, l + 0 }'
}

info() {
	[ -n "${KV_KEYVISOR:-}" ] && [ -n "${KEYVISOR_SOCKET:-}" ] &&
	    "$KV_KEYVISOR" info --json >"$dir/.info.tmp" 2>&1 &&
	    mv "$dir/.info.tmp" "$dir/info"
}

case $mode in
record)
	for s in TERM INT HUP QUIT USR1 USR2 WINCH; do
		# shellcheck disable=SC2064
		trap "echo $s >>'$dir/rec'" "$s"
	done
	# shellcheck disable=SC2064 # expanded now, on purpose
	trap "echo TERM >>'$dir/rec'; exit $1" TERM
	# Not forwarded by keyvisord, but by tini: ALRM, PIPE, SIGRTMIN+3.
	# shellcheck disable=SC2172 # RTMIN+3 has no portable name
	trap '' ALRM PIPE 37
	put ready "$$"
	idle
	;;
storm)
	# kv-worker forks N children that sleep 0.2 s, and exits at once.
	"$KV_WORKER" --orphans "$1" || exit 1
	i=0
	set -- $(census)
	while [ "$2" -gt 0 ] && [ $i -lt 200 ]; do # the orphans end: <= 10 s
		sleep 0.05
		i=$((i + 1))
		set -- $(census)
	done
	i=0
	while [ "$1" -gt 0 ] && [ $i -lt 40 ]; do # and are reaped: <= 2 s
		sleep 0.05
		i=$((i + 1))
		set -- $(census)
	done
	info
	put storm "zombies $1 live $2"
	;;
ppid)
	# One orphan reports its parent once its own parent is gone.
	sh -c 'sh -c "sleep 0.3; read l </proc/\$\$/stat; set -- \$l;
	    echo \$4 >\"$1/.ppid.tmp\"; mv \"$1/.ppid.tmp\" \"$1/ppid\"" &' \
	    - "$dir"
	"$KV_WORKER" --orphans 20 || exit 1
	i=0
	while [ ! -e "$dir/ppid" ] && [ $i -lt 100 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	sleep 0.3 # the 20 orphans live 0.2 s
	info
	put 'done' ok
	;;
workers)
	status=$1 how=$2
	k() { "$KV_KEYVISOR" start "$@"; }
	{
		k w:plain -- "$KV_WORKER" &&
		    k w:deaf --stop-timeout 1 -- "$KV_WORKER" --ignore-term &&
		    k w:orphans -- "$KV_WORKER" --orphans 200 --exit-after 100 &&
		    k w:crashy --restart permanent --max-restarts 1000 \
			--max-seconds 1 -- "$KV_WORKER" --crash --exit-after 0.05
	} >"$dir/.pids.tmp" 2>"$dir/start.err" || exit 1
	mv "$dir/.pids.tmp" "$dir/pids"
	[ "$how" = exit ] && exit "$status"
	trap 'exit $status' TERM
	put ready "$$"
	idle
	;;
ignore-term)
	trap '' TERM
	put ready "$$"
	idle
	;;
*)
	echo "init-main.sh: unknown mode $mode" >&2
	exit 2
	;;
esac
