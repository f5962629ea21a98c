#!/bin/sh
# keyvisord as a container's init (issue #4): "keyvisord -- MAIN" as PID 1
# of a new PID namespace (unshare --pid --fork --mount-proc, root only) and
# as a plain process of the host's namespace.  The main command is
# init-main.sh, which records what reaches it; init-lib.sh starts and
# reaps the namespaces.  Each keyvisord is a fresh one on this test's
# socket, one at a time.
. "$KV_SRC/tests/integration/lib.sh"
. "$KV_SRC/tests/integration/init-lib.sh"

MAIN="$KV_SRC/tests/integration/init-main.sh"
KV_KEYVISOR=$KEYVISOR
export KV_WORKER KV_KEYVISOR
# A keyvisord that was killed (a failure) leaves its registry behind: this
# test's is named after its instance, so it is ours to remove.
trap 'ns_cleanup; t_cleanup; rm -f "/dev/shm/keyvisor.$KV_INSTANCE"' EXIT

if ! unshare --pid --fork --mount-proc true >/dev/null 2>&1; then
	echo "1..0 # SKIP unshare --pid --fork --mount-proc is not permitted"
	exit 0
fi

# A fresh report directory for one scenario.
scenario() { # NAME
	D="$T_DIR/$1"
	rm -rf "$D"
	mkdir -p "$D"
	LOG="$D/log"
}
jfield() { # FILE NAME: a scalar of a one-line JSON object
	sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" 2>/dev/null
}
# Run a command for at most SECONDS: SIGTERM, then SIGKILL 2 s later.
# --foreground: timeout signals only the command, and stays to reap it
# (without it, its SIGKILL to its own process group takes timeout too and
# leaves the command a zombie of whatever adopts it).
bounded() { # SECONDS COMMAND...
	timeout --foreground -k 2 "$@"
}
between() { # LOW HIGH VALUE
	[ "$3" -ge "$1" ] && [ "$3" -lt "$2" ]
}
not_pending() { [ "$(ns_pending "$1")" = 0 ]; }
running_state() { [ "$1" = S ] || [ "$1" = R ]; } # not T (stopped), not Z
recorded() { grep -qx "$1" "$D/rec"; }
log_has() { grep -q "$1" "$LOG"; }

# The mask PID 1 must block: every signal but SIGKILL and SIGSTOP (which
# cannot be), glibc's 32 and 33 (which sigprocmask refuses), and the seven
# the kernel raises for a fault: ILL 4, TRAP 5, ABRT 6, BUS 7, FPE 8,
# SEGV 11, SYS 31.  It comes to fffffffe3ffbfa07.
blk=0 s=1
while [ $s -le 64 ]; do
	case $s in
	4 | 5 | 6 | 7 | 8 | 9 | 11 | 19 | 31 | 32 | 33) ;;
	*) blk=$((blk | (1 << (s - 1)))) ;;
	esac
	s=$((s + 1))
done
SIGBLK=$(printf '%016x' "$blk")
SIGIGN=0000000000380000 # TSTP 20, TTIN 21, TTOU 22

# --- PID 1: its signal mask, idle, signals forwarded, SIGTERM ----------

scenario record
ns_start "$LOG" "$KEYVISORD" -- "$MAIN" record "$D" 42 ||
    { echo "Bail out! unshare did not start"; exit 1; }
if ! t_until 5 test -e "$D/ready"; then
	echo "Bail out! the main command did not start: $(cat "$LOG")"
	exit 1
fi
P1=$NS_P1
t_eq "$SIGBLK" "$(ns_status_field "$P1" SigBlk)" \
    "PID 1 blocks every signal but KILL, STOP, 32, 33 and the 7 fault signals"
t_eq "$SIGIGN" "$(ns_status_field "$P1" SigIgn)" \
    "PID 1 ignores SIGTSTP, SIGTTIN and SIGTTOU, and nothing else"

c0=$(ns_cpu_ticks "$P1")
sleep 1
c1=$(ns_cpu_ticks "$P1")
t_check "an idle PID 1 does not spin ($((c1 - c0)) ticks in 1 s)" \
    [ $((c1 - c0)) -le 2 ]

# Signals keyvisord does not act on: PID 1 has no default action to die
# of, and reads them so that none stays pending.
for s in ALRM PIPE TSTP TTIN TTOU; do
	kill -s "$s" "$P1"
done
i=0
while [ $i -lt 50 ]; do
	kill -s 37 "$P1" # SIGRTMIN+3, queued 50 times
	i=$((i + 1))
done
t_check "SIGALRM, SIGPIPE and 50 x SIGRTMIN+3 are read, not left pending" \
    t_until 2 not_pending "$P1"
state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$P1/stat")
t_check "PID 1 survives them, and TSTP/TTIN/TTOU do not stop it ($state)" \
    running_state "$state"

for s in HUP USR1 USR2 WINCH INT QUIT; do
	kill -s "$s" "$P1"
	t_check "SIG$s to PID 1 reaches the main command" t_until 2 recorded "$s"
done
ns_mark
kill -TERM "$P1"
ns_wait 10
t_eq 42 "$NS_STATUS" "SIGTERM to PID 1: it exits with the main command's status"
t_check "SIGTERM reached the main command" recorded TERM
t_check "and PID 1 was gone within 1 s (${NS_MS} ms)" between 0 1000 "$NS_MS"

# --- Exit status, as PID 1 ---------------------------------------------

bad=""
code=0
while [ $code -le 255 ]; do
	bounded 10 unshare --pid --fork --kill-child --mount-proc \
	    "$KEYVISORD" -- "$KV_WORKER" --exit-after 0 --code $code \
	    2>/dev/null
	got=$?
	[ $got -eq $code ] || bad="$bad $code:$got"
	code=$((code + 1))
done
t_eq "" "$bad" "main exits with every code 0-255: PID 1 exits with the same"

for s in TERM:15 USR1:10 USR2:12; do
	n=${s#*:} s=${s%:*}
	bounded 10 unshare --pid --fork --kill-child --mount-proc \
	    "$KEYVISORD" -- sh -c "kill -s $s \$\$" 2>/dev/null
	t_eq $((128 + n)) $? "main killed by SIG$s: PID 1 exits $((128 + n))"
done

scenario forward-kill
ns_start "$LOG" "$KEYVISORD" -- "$KV_WORKER" --print
t_until 5 log_has "^kv-worker"
ns_mark
kill -s USR2 "$NS_P1"
ns_wait 5
t_eq 140 "$NS_STATUS" "SIGUSR2 to PID 1 kills the main command: exit 140"

# An ignored SIGCHLD is inherited through exec and makes the kernel reap
# every child itself: keyvisord must undo it, or it never sees one exit.
t_exit 3 "started with SIGCHLD ignored, it still sees the main exit 3" \
    bounded 5 env --ignore-signal=CHLD "$KEYVISORD" -- sh -c "exit 3"

t_exit 127 "a main command that does not exist: exit 127" \
    "$KEYVISORD" -- "$T_DIR/no-such-command"
t_exit 126 "a main command that cannot be executed: exit 126" \
    "$KEYVISORD" -- /dev/null

# --- Orphan storm, as PID 1 ----------------------------------------------

scenario storm
ns_start "$LOG" "$KEYVISORD" -- "$MAIN" storm "$D" 1000
ns_wait 30
t_eq 0 "$NS_STATUS" "1,000-orphan storm: the main command exits 0"
t_eq "zombies 0 live 0" "$(cat "$D/storm" 2>/dev/null)" \
    "after 1,000 orphans exit, no zombie is left in the namespace"
n=$(jfield "$D/info" orphans_reaped)
t_check "keyvisor info counts them: orphans_reaped $n >= 1000" \
    [ "${n:-0}" -ge 1000 ]

# --- Not PID 1 ---------------------------------------------------------

scenario subreaper
kv_daemon_start -- "$MAIN" ppid "$D"
t_until 10 test -e "$D/done"
kpid=$DPID
kv_daemon_stop
t_eq 0 "$DAEMON_STATUS" "not PID 1: keyvisord exits with the main's status 0"
t_eq "$kpid" "$(cat "$D/ppid" 2>/dev/null)" \
    "an orphaned grandchild of the main command is adopted by keyvisord"
n=$(jfield "$D/info" orphans_reaped)
t_check "and reaped: orphans_reaped $n >= 21" [ "${n:-0}" -ge 21 ]
t_eq "true false" "$(jfield "$D/info" subreaper) $(jfield "$D/info" pid1)" \
    "info: subreaper true, pid1 false"

# With --no-subreaper the orphans go to the nearest subreaper or init
# above keyvisord.  That is made a shell of our own, PID 1 of a namespace
# (so not the host's init, which may never reap them), and keyvisord is
# its child: pid 2.
scenario no-subreaper
ns_start "$LOG" sh -c '"$0" --no-subreaper -- "$1" ppid "$2"; wait' \
    "$KEYVISORD" "$MAIN" "$D"
ns_wait 15
t_eq 0 "$NS_STATUS" "--no-subreaper: keyvisord exits with the main's status 0"
t_eq "1 2" "$(cat "$D/ppid" 2>/dev/null) $(jfield "$D/info" pid)" \
    "--no-subreaper: the orphan goes to the init above (1), not keyvisord (2)"
t_eq "0 false" \
    "$(jfield "$D/info" orphans_reaped) $(jfield "$D/info" subreaper)" \
    "--no-subreaper: orphans_reaped 0, subreaper false"

# --- Keyed workers at shutdown -------------------------------------------
#
# The main command starts w:plain, w:deaf (ignores SIGTERM, stop timeout
# 1 s), w:orphans (leaves 200 orphans) and w:crashy (crashes every 50 ms,
# restarted), then waits for SIGTERM, or exits at once.

stopped_all() { # the log of a shutdown: each worker stopped, none restarted
	sed -n '/stopping [0-9]* workers/,$p' "$LOG" >"$D/after"
	grep -q "w:plain: pid [0-9]* exited with code 0" "$D/after" &&
	    grep -q "w:deaf: pid [0-9]* killed by SIGKILL" "$D/after" &&
	    grep -q "w:orphans: pid [0-9]* exited with code 0" "$D/after" &&
	    ! grep -q "started pid" "$D/after" &&
	    tail -n 1 "$LOG" | grep -q "instance .* stopped"
}

scenario workers-term
ns_start "$LOG" "$KEYVISORD" -- "$MAIN" workers "$D" 42 wait
t_until 5 test -e "$D/ready"
sleep 0.3 # w:crashy crash-loops meanwhile
ns_mark
kill -TERM "$NS_P1"
ns_wait 10
t_eq 42 "$NS_STATUS" "workers, SIGTERM to PID 1: exit with the main's status"
t_check "every worker stopped (w:deaf by SIGKILL), none restarted" \
    stopped_all
t_check "within w:deaf's 1 s stop timeout and a bit (${NS_MS} ms)" \
    between 1000 3000 "$NS_MS"

scenario workers-exit
ns_mark
ns_start "$LOG" "$KEYVISORD" -- "$MAIN" workers "$D" 7 exit
ns_wait 10
t_eq 7 "$NS_STATUS" "workers, the main command exits 7 first: PID 1 exits 7"
t_check "every worker stopped (w:deaf by SIGKILL), none restarted" \
    stopped_all
t_check "within w:deaf's stop timeout and a bit (${NS_MS} ms)" \
    between 1000 3000 "$NS_MS"

# Outside a namespace, nothing would clean up after keyvisord: check that
# no worker it started is left running.
scenario workers-host
LOG="$T_DIR/daemon.log"
: >"$LOG"
kv_daemon_start -- "$MAIN" workers "$D" 42 wait
t_until 5 test -e "$D/ready"
kv_daemon_stop
t_eq 42 "$DAEMON_STATUS" "not PID 1, workers, SIGTERM: exit with the main's status"
left=""
for p in $(cat "$D/pids"); do
	alive "$p" && left="$left $p"
done
t_eq "" "$left" "no worker is left running after keyvisord exits"
t_check "every worker stopped (w:deaf by SIGKILL), none restarted" \
    stopped_all

# keyvisor shutdown: SIGTERM to the main command, SIGKILL 5 s later.
scenario shutdown
kv_daemon_start -- "$MAIN" ignore-term "$D"
t_until 5 test -e "$D/ready"
ns_mark
t_exit 0 "keyvisor shutdown is acknowledged" kv shutdown
t_until 8 ns_gone "$DPID"
kv_daemon_stop
ms=$(($(ns_now) - NS_T0))
t_eq 137 "$DAEMON_STATUS" "a main command that ignores SIGTERM is killed: 137"
t_check "by SIGKILL 5 s after keyvisor shutdown ($ms ms)" between 5000 7000 "$ms"

# --- Without a main command ----------------------------------------------

scenario no-main
LOG="$T_DIR/daemon.log"
kv_daemon_start
t_eq "$SIGBLK" "$(ns_status_field "$DPID" SigBlk)" \
    "not PID 1: the same signals blocked"
t_eq 0000000000000000 "$(ns_status_field "$DPID" SigIgn)" \
    "not PID 1: no signal ignored"
for s in HUP USR1 USR2 WINCH ALRM; do
	kill -s "$s" "$DPID"
done
sleep 0.3
t_check "SIGHUP, USR1, USR2, WINCH, ALRM do not stop it" kv info
kv_daemon_stop
t_eq 0 "$DAEMON_STATUS" "without a main command, SIGTERM: exit 0"

t_done
