#!/bin/sh
# keyvisord and tini side by side as a container's init: the same scenarios
# against both, each as PID 1 of a new PID namespace (unshare --pid --fork
# --mount-proc; root only), and a table of the results:
#
#   tests/init-vs-tini.sh [BUILD_DIR]       (default: build, or $KV_BUILD)
#
# Exits 1 if keyvisord does worse than tini on any row, or gets a row with
# a known right answer wrong; 77 (skipped) without tini or unshare.  Rows
# of times allow keyvisord 100 ms more than tini (scheduling noise), rows
# of counts none.  The main command is tests/integration/init-main.sh.
set -u

here=$(cd "$(dirname "$0")" && pwd)
KV_SRC=${KV_SRC:-$(dirname "$here")}
KV_BUILD=${KV_BUILD:-${1:-$KV_SRC/build}}
KEYVISORD=$KV_BUILD/supervisord/keyvisord
KV_KEYVISOR=$KV_BUILD/supervisord/keyvisor
KV_WORKER=$KV_BUILD/worker/kv-worker
MAIN=$KV_SRC/tests/integration/init-main.sh
export KV_WORKER

if ! TINI=$(command -v tini); then
	echo "init-vs-tini: tini is not installed (apt-get install tini): skipped"
	exit 77
fi
if ! unshare --pid --fork --mount-proc true >/dev/null 2>&1; then
	echo "init-vs-tini: unshare --pid is not permitted (needs root): skipped"
	exit 77
fi
for f in "$KEYVISORD" "$KV_KEYVISOR" "$KV_WORKER"; do
	[ -x "$f" ] || { echo "init-vs-tini: $f: not built" >&2; exit 1; }
done

. "$KV_SRC/tests/integration/init-lib.sh"

W=$(mktemp -d "${TMPDIR:-/tmp}/kv-vs-tini.XXXXXX")
export KEYVISOR_SOCKET="$W/kv.sock" KEYVISOR_INSTANCE="vs$$"
unset KEYVISOR_REGISTRY
# A keyvisord that was killed leaves its registry behind: ours is named
# after this run, so it is ours to remove.
trap 'ns_cleanup; rm -rf "$W" "/dev/shm/keyvisor.$KEYVISOR_INSTANCE"' EXIT
trap 'exit 1' INT TERM

bounded() { timeout --foreground -k 2 "$@"; } # see test_init.sh
fresh() { # NAME: a fresh report directory D
	D="$W/$1"
	rm -rf "$D"
	mkdir -p "$D"
}
recorded() { grep -qx "$1" "$D/rec"; }
not_pending() { [ "$(ns_pending "$1")" = 0 ]; }

# Start INIT (tini or keyvisord) as PID 1 with the main command ARGS.
# keyvisord gets KV_KEYVISOR, so that the main command can ask it for info.
ns_init() { # INIT MAIN [ARG...]
	_t=$1
	shift
	case $_t in
	tini) KV_KEYVISOR="" ns_start "$D/log" "$TINI" -- "$@" ;;
	keyvisord) KV_KEYVISOR=$KV_KEYVISOR ns_start "$D/log" "$KEYVISORD" -- "$@" ;;
	esac
}

# Results: one line per row and tool, "ROW<tab>TOOL<tab>VALUE", and the
# rows in order with how they are judged.
: >"$W/results"
: >"$W/rows"
row() { # ROW RULE: RULE is low (fewer is better), yes, ms, or =VALUE
	printf '%s\t%s\n' "$1" "$2" >>"$W/rows"
}
put() { # ROW TOOL VALUE
	printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$W/results"
}

# --- Scenarios, each run for both ------------------------------------------

storm() { # INIT
	fresh "storm-$1"
	ns_init "$1" "$MAIN" storm "$D" 1000
	ns_wait 30
	# shellcheck disable=SC2046 # "zombies Z live L" into $2..$5
	set -- "$1" $(cat "$D/storm" 2>/dev/null)
	put "zombies after a 1,000-orphan storm" "$1" "${3:-?}"
}

adopt() { # INIT: not PID 1, with its subreaper flag
	fresh "adopt-$1"
	case $1 in
	tini) set -- "$1" "$TINI" -s ;;
	keyvisord) set -- "$1" "$KEYVISORD" ;;
	esac
	_t=$1
	shift
	# PID 1 is a shell; the init is its child, pid 2.
	ns_start "$D/log" sh -c '"$@"; wait' sh "$@" -- "$MAIN" ppid "$D"
	ns_wait 15
	v=no
	[ "$(cat "$D/ppid" 2>/dev/null)" = 2 ] && v=yes
	put "not PID 1: orphans adopted (tini -s)" "$_t" "$v"
}

signals() { # INIT
	fresh "signals-$1"
	ns_init "$1" "$MAIN" record "$D" 42
	if ! ns_sleep_until 5 test -e "$D/ready"; then
		ns_wait 0
		return
	fi
	p=$NS_P1
	c0=$(ns_cpu_ticks "$p")
	sleep 1
	put "CPU ticks of an idle PID 1 over 1 s" "$1" \
	    $(($(ns_cpu_ticks "$p") - c0))
	kill -s ALRM "$p"
	kill -s PIPE "$p"
	i=0
	while [ $i -lt 50 ]; do
		kill -s 37 "$p"
		i=$((i + 1))
	done
	ns_sleep_until 2 not_pending "$p"
	put "signals pending after ALRM, PIPE, 50 x RTMIN+3" "$1" \
	    "$(ns_pending "$p")"
	for s in HUP USR1 USR2 WINCH INT QUIT; do
		kill -s "$s" "$p"
		v=no
		ns_sleep_until 2 recorded "$s" && v=yes
		put "SIG$s forwarded to the main command" "$1" $v
	done
	ns_mark
	kill -s TERM "$p"
	ns_wait 10
	v=no
	recorded TERM && v=yes
	put "SIGTERM forwarded to the main command" "$1" $v
	put "SIGTERM to PID 1: exit status (main exits 42)" "$1" "$NS_STATUS"
	put "SIGTERM to PID 1: ms until it is gone" "$1" "$NS_MS"
}

statuses() { # INIT
	fresh "status-$1"
	case $1 in
	tini) set -- "$1" "$TINI" ;;
	keyvisord) set -- "$1" "$KEYVISORD" ;;
	esac
	n=0 code=0
	while [ $code -le 255 ]; do
		bounded 10 unshare --pid --fork --kill-child --mount-proc \
		    "$2" -- "$KV_WORKER" --exit-after 0 --code $code 2>/dev/null
		got=$?
		[ $got -eq $code ] && n=$((n + 1))
		case $code in
		0 | 1 | 255) put "main exits $code: exit status" "$1" $got ;;
		esac
		code=$((code + 1))
	done
	put "main exits 0..255: statuses reproduced" "$1" "$n/256"
	for s in TERM:15 USR1:10 USR2:12; do
		n=${s#*:} s=${s%:*}
		bounded 10 unshare --pid --fork --kill-child --mount-proc \
		    "$2" -- sh -c "kill -s $s \$\$" 2>/dev/null
		put "main killed by SIG$s: exit status" "$1" $?
	done
}

# The init started with signals ignored (SIG_IGN survives exec; a shell
# ignores SIGINT and SIGQUIT for "cmd &").
inherited() { # INIT
	case $1 in
	tini) set -- "$1" "$TINI" ;;
	keyvisord) set -- "$1" "$KEYVISORD" ;;
	esac
	# env execs the init: it is PID 1 (unshare itself resets SIGCHLD).
	v=$(bounded 10 unshare --pid --fork --kill-child --mount-proc \
	    env --ignore-signal=INT,QUIT "$2" -- \
	    awk '$1 == "SigIgn:" { print $2 }' /proc/self/status 2>/dev/null)
	put "started with INT, QUIT ignored: main's SigIgn" "$1" "$v"
	bounded 3 unshare --pid --fork --kill-child --mount-proc \
	    env --ignore-signal=CHLD "$2" -- \
	    "$KV_WORKER" --exit-after 0 --code 3 2>/dev/null
	put "started with CHLD ignored: exit status (main 3)" "$1" $?
}

row "zombies after a 1,000-orphan storm" low
row "not PID 1: orphans adopted (tini -s)" yes
for s in TERM INT HUP QUIT USR1 USR2 WINCH; do
	row "SIG$s forwarded to the main command" yes
done
row "SIGTERM to PID 1: exit status (main exits 42)" =42
row "SIGTERM to PID 1: ms until it is gone" ms
row "signals pending after ALRM, PIPE, 50 x RTMIN+3" =0
row "CPU ticks of an idle PID 1 over 1 s" low
for c in 0 1 255; do
	row "main exits $c: exit status" "=$c"
done
row "main exits 0..255: statuses reproduced" =256/256
row "main killed by SIGTERM: exit status" =143
row "main killed by SIGUSR1: exit status" =138
row "main killed by SIGUSR2: exit status" =140
row "started with INT, QUIT ignored: main's SigIgn" =0000000000000000
row "started with CHLD ignored: exit status (main 3)" =3

for t in tini keyvisord; do
	storm $t
	adopt $t
	signals $t
	statuses $t
	inherited $t
done

# --- The table ---------------------------------------------------------------

# Judge each row: "=" (as good), "better", "WORSE", or "WRONG" (keyvisord
# misses the right answer even where tini misses it too).
awk -F '\t' '
NR == FNR { v[$1, $2] = $3; next }
function num(x) { return x ~ /^[0-9]+$/ }
{
	name = $1; rule = $2
	t = ((name, "tini") in v) ? v[name, "tini"] : "-"
	k = ((name, "keyvisord") in v) ? v[name, "keyvisord"] : "-"
	if (rule ~ /^=/) {
		want = substr(rule, 2)
		j = k == want ? (t == want ? "=" : "better") : \
		    (t == want ? "WORSE" : "WRONG")
	} else if (rule == "yes") {
		j = k == "yes" ? (t == "yes" ? "=" : "better") : \
		    (t == "yes" ? "WORSE" : "WRONG")
	} else if (rule == "low") {
		j = !num(k) ? "WRONG" : !num(t) ? "better" : \
		    k + 0 < t + 0 ? "better" : k + 0 == t + 0 ? "=" : "WORSE"
	} else { # ms: 100 ms of slack
		j = !num(k) ? "WRONG" : !num(t) ? "better" : \
		    k + 0 <= t + 100 ? (k + 0 < t + 0 ? "better" : "=") : "WORSE"
	}
	rows[++n] = sprintf("%-48s %-16s %-16s %s", name, t, k, j)
	if (j == "WORSE" || j == "WRONG")
		bad++
}
END {
	printf "%-48s %-16s %-16s %s\n", "scenario", "tini", "keyvisord", ""
	for (i = 1; i <= n; i++)
		print rows[i]
	printf "\n=: as good (times: within 100 ms).  WRONG: not the right " \
	    "answer.\n"
	printf "%d rows, keyvisord worse or wrong on %d\n", n, bad
	exit bad > 0
}' "$W/results" "$W/rows"
