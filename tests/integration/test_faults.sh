#!/bin/sh
# test_faults: fault injection (issue #6).  Each scenario runs its own
# keyvisord, on an instance of its own, and ends it:
#
#   A. fork fails with EAGAIN (the daemon runs as nobody under a lowered
#      RLIMIT_NPROC): start exits 4, the name is released, the daemon
#      serves on; a restart that cannot fork is retried every 100 ms or
#      so, not in a tight loop, and succeeds once the limit is lifted.
#   B. the daemon runs out of fds (RLIMIT_NOFILE 64, 200 idle clients):
#      extra clients are refused rather than left hanging, a worker killed
#      meanwhile is restarted, and new commands work again within ~2 s of
#      the clients going away.
#   C. exec fails (ENOENT, EACCES, ENOEXEC): start exits 8 with the errno
#      text; a restart's exec failure sends the key to "failed", with the
#      errno text as the reason.
#   D. the daemon is SIGKILLed with 50 workers: they die with it
#      (PDEATHSIG), CLI lookups say the daemon is gone (exit 5), and the
#      next daemon removes the stale socket and segment and serves no
#      stale name.
#   E. a registry writer (kv-regfault) SIGKILLs itself in the middle of an
#      insert, holding a partition's robust mutex with its sequence counter
#      odd: the daemon's next write to that partition repairs it, and no
#      name is lost or duplicated.
#   F. signal storms: 10,000 orphans reaped in a burst (no zombie, counted,
#      fds and heap flat); 200 SIGHUP reloads while workers are started and
#      stopped (no request lost, the last reload in force, no zombie, no
#      leak: the sanitizer build's LeakSanitizer runs at the exit).
#
# About 30 s (50 to 75 s in a sanitizer build); the orphan storm is the
# longest part.
#
# "test_faults.sh valgrind" runs instead one representative scenario with
# keyvisord under valgrind (the meson test faults-valgrind, suite valgrind,
# about 5 s); "test_faults.sh a,c" runs the scenarios named.
. "$KV_SRC/tests/integration/lib.sh"

MODE=${1:-all}
REGFAULT="$KV_BUILD/tests/integration/kv-regfault"
LOG="$T_DIR/daemon.log"
: >"$LOG"
LOGN=0          # lines of $LOG written before the current daemon started
BG=""           # pids of our own background jobs
INSTANCES=""    # the instances we ran, for their segments
NB_DIR=""       # scenario A's socket directory, owned by nobody
SOCK0=$KEYVISOR_SOCKET
# A sanitizer build: its RSS says nothing of leaks, and valgrind cannot run it.
SANITIZED=""
ldd "$KEYVISORD" 2>/dev/null | grep -q 'libasan\|libtsan\|libmsan' && SANITIZED=yes

# ---- helpers --------------------------------------------------------------

f_cleanup() {
	for _p in $BG; do kill "$_p" 2>/dev/null; done
	# A daemon under a lowered RLIMIT_NPROC could not start LeakSanitizer's
	# thread at its exit.
	[ -n "$NB_DIR" ] && [ -n "$DPID" ] && nproc_lift 2>/dev/null
	t_cleanup
	[ -n "$NB_DIR" ] && rm -rf "$NB_DIR"
	# The segments a SIGKILLed daemon of ours left behind (names t$$X).
	for _i in $INSTANCES; do rm -f "/dev/shm/keyvisor.$_i"; done
}
trap f_cleanup EXIT

# f_start SUFFIX [TIMEOUT] -- COMMAND...: run COMMAND (keyvisord, or a
# wrapper that execs it) in the background as the daemon of instance
# t$$SUFFIX, and wait up to TIMEOUT (5) s until it answers.
f_start() {
	KEYVISOR_INSTANCE="$KV_INSTANCE$1"
	export KEYVISOR_INSTANCE
	INSTANCES="$INSTANCES $KEYVISOR_INSTANCE"
	SEG="keyvisor.$KEYVISOR_INSTANCE"
	_to=5
	[ "$2" != "--" ] && _to=$2 && shift
	shift 2
	LOGN=$(wc -l <"$LOG")
	"$@" >>"$LOG" 2>&1 &
	DPID=$!
	if ! kv_daemon_ready "$_to"; then
		echo "Bail out! keyvisord did not start: $(f_log)"
		exit 1
	fi
}
# The current daemon's log lines.
f_log() { tail -n +"$((LOGN + 1))" "$LOG"; }
f_log_has() { f_log | grep -q -- "$1"; }
f_log_count() { f_log | grep -c -- "$1"; }

# Stop the daemon with SIGTERM; check it exits 0 and leaves no sanitizer
# report, no segment and no socket.  DESCRIPTION prefix in $1.
f_stop() {
	kv_daemon_stop
	t_eq 0 "$DAEMON_STATUS" "$1: the daemon exits 0 on SIGTERM"
	t_check "$1: no sanitizer report in the daemon's log" kv_daemon_log_clean
	t_check "$1: the daemon removed its segment" test ! -e "/dev/shm/$SEG"
	t_check "$1: the daemon removed its socket" test ! -e "$KEYVISOR_SOCKET"
}

# bg_wait PID: wait for a background job of ours and forget its pid, which
# the system may hand out again.
bg_wait() {
	wait "$1"
	_s=$?
	BG=$(for _p in $BG; do [ "$_p" = "$1" ] || echo "$_p"; done)
	return $_s
}

fds() { ls "/proc/$DPID/fd" 2>/dev/null | wc -l; }
# For t_until, which would see a $(...) in its arguments expanded once.
fds_cmp() { test "$(fds)" "$1" "$2"; } # -le N ...
orphans_ge() { [ "$(info_field orphans_reaped)" -ge "$1" ]; }
count_is() { [ "$(kv count 2>/dev/null)" = "$1" ]; }
# The daemon's anonymous memory (its heap): VmRSS also counts the pages of
# the registry segment, which grow as new keys touch new slots.
rss_kb() { awk '/^RssAnon:/ { print $2 }' "/proc/$DPID/status"; }
# utime + stime of PID, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
# Field 22 of /proc/PID/stat: the start time the registry records.
start_time() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $20 }'; }
procs() {
	cat /proc/[0-9]*/stat 2>/dev/null |
	    awk '{ pid = $1; sub(/.*\) /, ""); print pid, $1, $2, $3 }'
}
zombie_children() { procs | awk -v d="$DPID" '$2 == "Z" && $3 == d' | wc -l; }
no_zombie_children() { [ "$(zombie_children)" -eq 0 ]; }
lk() { kv lookup "$1" 2>/dev/null; }
# lookup KEY gives a live pid other than OLD.
changed() { _p=$(lk "$1") && is_pid "$_p" && [ "$_p" != "$2" ] && alive "$_p"; }
# A field of "keyvisor status KEY": state, pid, reason ...
field() { kv status "$1" 2>/dev/null | sed -n "s/^$2: //p"; }
state_is() { [ "$(field "$1" state)" = "$2" ]; }
running_pid_is() { [ "$(field "$1" state)" = running ] && [ "$(field "$1" pid)" = "$(lk "$1")" ]; }
# "KEY PID" of each supervised key with a process, from ls.
ls_pids() { kv ls 2>/dev/null | awk 'NR > 1 && $2 > 0 { print $1, $2 }'; }
# Every supervised key with a process is found in the registry with the
# pid ls gives; prints the first that is not.
all_found() {
	ls_pids >"$T_DIR/ls.pids"
	while read -r _k _p; do
		[ "$(lk "$_k")" = "$_p" ] || { echo "$_k: ls $_p, lookup $(lk "$_k")"; return 1; }
	done <"$T_DIR/ls.pids"
}
info_field() { kv info 2>/dev/null | sed -n "s/^$1: //p"; }
# Does TEXT ($2) contain STRING ($1)?
has() { case $2 in *"$1"*) return 0 ;; esac; return 1; }
# Does TEXT ($1) start with one of the other arguments?
has_prefix() {
	_t=$1
	shift
	for _w in "$@"; do
		case $_t in "$_w"*) return 0 ;; esac
	done
	return 1
}

# ===========================================================================
# A. fork fails with EAGAIN.
# ===========================================================================
# RLIMIT_NPROC does not bind root, so the daemon runs as nobody (setpriv),
# with a socket directory of its own that nobody owns.  The limit is
# lowered on the running daemon with prlimit --pid: a soft limit of 1 makes
# every fork fail while the daemon itself exists, whatever other processes
# of nobody the machine runs.
#
# prlimit --pid as nobody: changing the limits of another user's process
# takes CAP_SYS_RESOURCE, which a container's root may lack; the soft limit
# of one's own process is free to move below the hard one.
nb_prlimit() {
	setpriv --reuid=65534 --regid=65534 --clear-groups \
	    prlimit --pid "$DPID" "$@"
}
nproc_soft() { awk '/^Max processes/ { print $3 }' "/proc/$DPID/limits"; }
nproc_hard() { awk '/^Max processes/ { print $4 }' "/proc/$DPID/limits"; }
nproc_lift() { nb_prlimit --nproc="$(nproc_hard)":; }

scenario_a() {
	if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null 2>&1 ||
	    ! command -v prlimit >/dev/null 2>&1; then
		t_skip "EAGAIN: fork failures" "needs root, setpriv and prlimit"
		return
	fi
	NB_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kv-faults-nobody.XXXXXX")
	chown 65534:65534 "$NB_DIR"
	export KEYVISOR_SOCKET="$NB_DIR/kv.sock"
	f_start a -- setpriv --reuid=65534 --regid=65534 --clear-groups \
	    "$KEYVISORD"
	t_eq 65534 "$(awk '/^Uid:/ { print $2 }' "/proc/$DPID/status")" \
	    "EAGAIN: the daemon runs as nobody"
	t_exit 0 "EAGAIN: start a1 before the limit" \
	    kv start a1 --max-restarts 100 --max-seconds 10 -- /bin/sleep 600
	A1=$T_OUT
	NPROC0=$(nproc_soft)
	nb_prlimit --nproc=1:
	t_eq 1 "$(nproc_soft)" "EAGAIN: the daemon's RLIMIT_NPROC is lowered to 1 (from $NPROC0)"

	t_exit 4 "EAGAIN: start exits 4 when fork fails" \
	    kv start a2 -- /bin/sleep 600
	t_check "EAGAIN: start says 'unable to fork: Resource temporarily unavailable'" \
	    has "unable to fork: Resource temporarily unavailable" "$T_ERR"
	t_exit 1 "EAGAIN: the name is released (lookup a2 exits 1)" kv lookup a2
	t_exit 1 "EAGAIN: the key is not supervised (status a2 exits 1)" kv status a2
	t_exit 0 "EAGAIN: the daemon keeps serving (ls)" kv ls
	t_check "EAGAIN: ls lists a1 and not a2" \
	    sh -c 'printf "%s\n" "$1" | awk "NR > 1 { print \$1 }" | xargs | grep -qx a1' _ "$T_OUT"
	t_exit 0 "EAGAIN: the daemon keeps serving (info)" kv info

	# A restart that cannot fork: retried after 100 ms at least
	# (SVC_SPAWN_RETRY_MS).  The attempts are counted in the log over a
	# window of about 3 s: at most one per 100 ms (95: the daemon's clock
	# is in whole milliseconds), plus one.
	kill -KILL "$A1"
	sleep 0.3
	ta=$(t_ms)
	c0=$(cpu_ticks "$DPID")
	n0=$(f_log_count '^keyvisord: a1: unable to restart: Resource temporarily unavailable')
	sleep 3
	n1=$(f_log_count '^keyvisord: a1: unable to restart: Resource temporarily unavailable')
	c1=$(cpu_ticks "$DPID")
	tb=$(t_ms)
	n=$((n1 - n0)) ms=$((tb - ta))
	echo "# EAGAIN: $n failed restarts of a1 in $ms ms ($n1 in all), daemon CPU $((c1 - c0)) ticks"
	t_check "EAGAIN: a restart that cannot fork is retried ($n attempts in $ms ms)" \
	    test "$n" -ge 3
	t_check "EAGAIN: ... with backoff, not in a tight loop (<= 1 per 100 ms: $n in $ms ms)" \
	    test "$n" -le $((ms / 95 + 1))
	t_check "EAGAIN: ... without burning the CPU ($((c1 - c0)) ticks in $ms ms)" \
	    test "$((c1 - c0))" -lt 100
	_st=$(field a1 state)
	t_check "EAGAIN: a1 waits in backoff meanwhile (state $_st)" \
	    has_prefix "$_st" backoff starting
	t_exit 1 "EAGAIN: a1's name is released while it cannot run" kv lookup a1

	nproc_lift
	t_eq "$(nproc_hard)" "$(nproc_soft)" "EAGAIN: the limit is lifted"
	t_check "EAGAIN: a1 runs again once the limit is lifted" \
	    t_until 2 changed a1 "$A1"
	NA1=$(lk a1)
	t_check "EAGAIN: status and lookup agree on a1's new pid" running_pid_is a1
	t_check "EAGAIN: the log says a1 started again" \
	    f_log_has "^keyvisord: a1: started pid $NA1 "
	t_exit 0 "EAGAIN: start works again" kv start a2 -- /bin/sleep 600
	t_eq "$T_OUT" "$(lk a2)" "EAGAIN: a2 is registered with its pid"
	f_stop "EAGAIN"
	t_check "EAGAIN: the workers are gone" dead "$NA1" "$T_OUT"
	export KEYVISOR_SOCKET="$SOCK0"
	rm -rf "$NB_DIR"
	NB_DIR=""
}

# ===========================================================================
# B. The daemon runs out of fds.
# ===========================================================================
# prlimit sets both limits to 64 (keyvisord raises its soft limit to the
# hard one).  A python3 process opens 200 connections and holds them, idle;
# the daemon accepts until EMFILE, then pauses accepting for 1 s at a time.
scenario_b() {
	f_start m -- prlimit --nofile=64 "$KEYVISORD"
	for k in b1 b2 b3; do
		kv start "$k" -- /bin/sleep 600 >/dev/null
	done
	B1=$(lk b1)
	FD0=$(fds)
	python3 - "$KEYVISOR_SOCKET" "$T_DIR/held" <<'EOF' &
import socket, sys, time
held = []
for i in range(200):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(sys.argv[1])
    except OSError as e:
        print("connect %d: %s" % (i, e), file=sys.stderr)
        break
    held.append(s)
with open(sys.argv[2], "w") as f:
    f.write("%d\n" % len(held))
time.sleep(120)
EOF
	HOLDER=$!
	BG="$BG $HOLDER"
	t_check "EMFILE: 200 client connections are held open" \
	    t_until 10 test -s "$T_DIR/held"
	echo "# EMFILE: $(cat "$T_DIR/held" 2>/dev/null) connections held; daemon fds $FD0 before"
	t_check "EMFILE: the daemon reaches its limit of 64 fds" \
	    t_until 5 fds_cmp -ge 64
	# The reply is what matters (checked next); the log says it too.
	kv info >/dev/null 2>&1
	t_check "EMFILE: the daemon says it refuses clients" \
	    t_until 3 f_log_has 'out of file descriptors: refusing clients'

	# One more client: refused (an error, or the connection closed), never
	# left waiting for an answer that cannot come.
	t0=$(t_ms)
	timeout 5 "$KEYVISOR" info >"$T_DIR/extra.out" 2>"$T_DIR/extra.err"
	rc=$?
	t1=$(t_ms)
	echo "# EMFILE: an extra 'keyvisor info' ended with $rc after $((t1 - t0)) ms: $(cat "$T_DIR/extra.err")"
	t_check "EMFILE: an extra client is refused, not left hanging (exit $rc after $((t1 - t0)) ms; 124: timed out after 5 s)" \
	    test "$rc" -ne 124
	t_check "EMFILE: ... and is told so (a non-zero exit)" test "$rc" -ne 0

	# Supervision goes on without fds: the reap, the release, the restart
	# (the new worker gets no channel, and says so once).
	kill -KILL "$B1"
	t_check "EMFILE: a worker SIGKILLed meanwhile is restarted" \
	    t_until 3 changed b1 "$B1"
	NB1=$(lk b1)
	t_check "EMFILE: the log says b1 started again" \
	    f_log_has "^keyvisord: b1: started pid $NB1 "
	ST=$(kv lookup --json b1 | sed -n 's/.*"start_time":\([0-9]*\).*/\1/p')
	t_eq "$(start_time "$NB1")" "$ST" \
	    "EMFILE: b1's registry entry has its new process's start time"

	# Recovery: the clients go, new commands work within about 2 s (the
	# accept pause is 1 s).
	kill "$HOLDER"
	bg_wait "$HOLDER" 2>/dev/null
	t0=$(t_ms)
	t_check "EMFILE: commands work again once the clients are gone" \
	    t_until 5 timeout 5 "$KEYVISOR" info
	t1=$(t_ms)
	t_check "EMFILE: ... within 2 s ($((t1 - t0)) ms)" test $((t1 - t0)) -le 2000
	t_check "EMFILE: the daemon closed the connections (fds back to <= $FD0)" \
	    t_until 3 fds_cmp -le "$FD0"
	t_check "EMFILE: b1 runs with the pid lookup gives" running_pid_is b1
	t_exit 0 "EMFILE: restart b1 works" kv restart b1
	t_check "EMFILE: b1 restarted" t_until 2 changed b1 "$NB1"
	t_eq "$FD0" "$(fds)" "EMFILE: b1's channel is back (fds as before the clients)"
	t_exit 0 "EMFILE: a new start works" kv start b4 -- /bin/sleep 600
	f_stop "EMFILE"
}

# ===========================================================================
# C. exec fails.
# ===========================================================================
scenario_c() {
	f_start x -- "$KEYVISORD"
	printf '#!/bin/sh\nexit 0\n' >"$T_DIR/noexec"
	chmod 644 "$T_DIR/noexec"
	printf 'this is not a program\n' >"$T_DIR/garbage"
	chmod 755 "$T_DIR/garbage"

	t_exit 8 "exec: start of a missing file exits 8" \
	    kv start c1 -- "$T_DIR/missing"
	t_check "exec: ... with ENOENT's text" \
	    has "No such file or directory" "$T_ERR"
	t_exit 8 "exec: start of a missing command on PATH exits 8" \
	    kv start c2 -- "kv-no-such-command-$$"
	t_check "exec: ... with ENOENT's text" \
	    has "No such file or directory" "$T_ERR"
	t_exit 8 "exec: start of a file without execute permission exits 8" \
	    kv start c3 -- "$T_DIR/noexec"
	t_check "exec: ... with EACCES's text" has "Permission denied" "$T_ERR"
	t_exit 8 "exec: start of a file that is no program exits 8" \
	    kv start c4 -- "$T_DIR/garbage"
	t_check "exec: ... with ENOEXEC's text" has "Exec format error" "$T_ERR"
	for k in c1 c2 c3 c4; do
		t_exit 1 "exec: $k's name is released (lookup exits 1)" kv lookup "$k"
	done
	t_exit 0 "exec: ls exits 0" kv ls
	t_eq 1 "$(printf '%s\n' "$T_OUT" | wc -l)" "exec: no key is left supervised"

	# A restart whose exec fails: the key goes to failed, with the reason.
	for how in ENOENT EACCES ENOEXEC; do
		p="$T_DIR/prog.$how"
		printf '#!/bin/sh\nexec sleep 600\n' >"$p"
		chmod 755 "$p"
		t_exit 0 "exec: start r$how" kv start "r$how" -- "$p"
		P=$T_OUT
		case $how in
		ENOENT) rm "$p" ; text="No such file or directory" ;;
		EACCES) chmod 644 "$p" ; text="Permission denied" ;;
		ENOEXEC) printf 'garbage\n' >"$p" ; text="Exec format error" ;;
		esac
		kill -KILL "$P"
		t_check "exec: r$how goes to failed when its restart cannot exec" \
		    t_until 3 state_is "r$how" failed
		t_eq "unable to exec: $text" "$(field "r$how" reason)" \
		    "exec: status gives r$how's reason"
		t_exit 1 "exec: r$how's name is released" kv lookup "r$how"
	done
	t_check "exec: the log says why (3 failed lines)" \
	    test "$(f_log_count ': failed: unable to exec: ')" -eq 3
	t_exit 0 "exec: a failed key can be stopped" kv stop rENOENT
	f_stop "exec"
}

# ===========================================================================
# D. The daemon is SIGKILLed with 50 workers.
# ===========================================================================
scenario_d() {
	f_start k -- "$KEYVISORD"
	seq 1 50 | sed 's/^/dk:/' | kv start --stdin -- /bin/sleep 600 \
	    >"$T_DIR/dk.started"
	t_eq 50 "$(wc -l <"$T_DIR/dk.started")" "SIGKILL: 50 workers started"
	PIDS=$(awk '{ print $2 }' "$T_DIR/dk.started" | xargs)
	OLD=$DPID
	kill -KILL "$DPID"
	wait "$DPID" 2>/dev/null
	DPID=""
	# shellcheck disable=SC2086 # a list of pids
	t_check "SIGKILL: the 50 workers died with the daemon (PDEATHSIG)" \
	    t_until 3 dead $PIDS
	t_check "SIGKILL: the stale socket is left" test -S "$KEYVISOR_SOCKET"
	t_check "SIGKILL: the stale segment is left" test -e "/dev/shm/$SEG"
	bad=0 said=0
	for i in $(seq 1 50); do
		kv lookup "dk:$i" >"$T_DIR/lk.out" 2>"$T_DIR/lk.err"
		rc=$?
		[ "$rc" -eq 5 ] && [ ! -s "$T_DIR/lk.out" ] || bad=$((bad + 1))
		grep -q 'daemon' "$T_DIR/lk.err" && said=$((said + 1))
	done
	t_eq 0 "$bad" "SIGKILL: every lookup in between exits 5 and prints no pid"
	t_eq 50 "$said" "SIGKILL: every lookup in between says the daemon is gone"
	t_exit 5 "SIGKILL: ls in between exits 5" kv ls
	t_exit 5 "SIGKILL: count in between exits 5" kv count

	f_start k -- "$KEYVISORD"
	t_check "SIGKILL: the new daemon says it removed the stale socket" \
	    f_log_has "removed the stale socket $KEYVISOR_SOCKET"
	t_check "SIGKILL: the new daemon says it removed the stale registry (50 names)" \
	    f_log_has "removed the stale registry /$SEG of pid $OLD (50 names)"
	bad=0
	for i in $(seq 1 50); do
		kv lookup "dk:$i" >/dev/null 2>&1
		[ $? -eq 1 ] || bad=$((bad + 1))
	done
	t_eq 0 "$bad" "SIGKILL: the new daemon serves no stale name (50 lookups exit 1)"
	t_eq 0 "$(kv count 2>/dev/null)" "SIGKILL: the new registry is empty"
	t_eq 1 "$(kv ls | wc -l)" "SIGKILL: the new daemon supervises nothing"
	t_exit 0 "SIGKILL: dk:1 can be started again" kv start dk:1 -- /bin/sleep 600
	t_eq "$T_OUT" "$(lk dk:1)" "SIGKILL: dk:1 is registered with its new pid"
	f_stop "SIGKILL"
}

# ===========================================================================
# E. A registry writer dies holding a partition lock.
# ===========================================================================
scenario_e() {
	f_start r -- "$KEYVISORD"
	seq 1 64 | sed 's/^/p:/' | kv start --stdin -- /bin/sleep 600 >/dev/null
	t_eq 64 "$(kv count)" "partition: 64 workers registered"
	# The partitions of the workers' keys and of candidate keys, in this
	# segment (its hash seed is random): the intruder and "fresh" go to
	# the partition of p:1, "other" to another one.
	# shellcheck disable=SC2046 # one argument per key
	"$REGFAULT" part "$SEG" $(seq 1 64 | sed 's/^/p:/') >"$T_DIR/parts"
	P=$(awk '$1 == "p:1" { print $2 }' "$T_DIR/parts")
	# shellcheck disable=SC2046 # one argument per key
	"$REGFAULT" part "$SEG" $(seq 1 400 | sed 's/^/intruder:/') |
	    awk -v p="$P" '$2 == p { print $1; exit }' >"$T_DIR/k.intruder"
	# shellcheck disable=SC2046 # one argument per key
	"$REGFAULT" part "$SEG" $(seq 1 400 | sed 's/^/fresh:/') |
	    awk -v p="$P" '$2 == p { print $1; exit }' >"$T_DIR/k.fresh"
	# shellcheck disable=SC2046 # one argument per key
	"$REGFAULT" part "$SEG" $(seq 1 400 | sed 's/^/other:/') |
	    awk -v p="$P" '$2 != p { print $1; exit }' >"$T_DIR/k.other"
	INTRUDER=$(cat "$T_DIR/k.intruder")
	FRESH=$(cat "$T_DIR/k.fresh")
	OTHER=$(cat "$T_DIR/k.other")
	INP=$(awk -v p="$P" '$2 == p { print $1 }' "$T_DIR/parts" | xargs)
	echo "# partition: $P holds $INP; intruder $INTRUDER, fresh $FRESH, other $OTHER"
	t_check "partition: keys picked (intruder, fresh, other)" \
	    test -n "$INTRUDER" -a -n "$FRESH" -a -n "$OTHER"

	# kv-regfault registers the intruder and SIGKILLs itself at
	# KV_CP_INS_OPEN (3): slot filled, sequence counter odd, lock held.
	"$REGFAULT" crash "$SEG" 3 "$INTRUDER" 2>"$T_DIR/crash.err"
	rc=$?
	t_eq 137 "$rc" "partition: the writer died of SIGKILL mid-insert $(cat "$T_DIR/crash.err")"
	S=$("$REGFAULT" state "$SEG" p:1)
	echo "# partition after the crash: $S"
	t_check "partition: it is left with its sequence counter odd" \
	    has " odd 1 " "$S"
	t_eq 0 "$("$REGFAULT" stats "$SEG" | awk '{ print $8 }')" \
	    "partition: no repair yet"
	# Lookups: a key of the broken partition is busy (exit 7) or found with
	# its pid, never "not found" nor another pid; the other keys are found.
	bad=0
	while read -r k part; do
		want=$(field "$k" pid)
		got=$(lk "$k")
		rc=$?
		if [ "$part" = "$P" ]; then
			[ "$rc" -eq 7 ] || [ "$got" = "$want" ] || bad=$((bad + 1))
		else
			[ "$got" = "$want" ] || bad=$((bad + 1))
		fi
	done <"$T_DIR/parts"
	t_eq 0 "$bad" "partition: lookups meanwhile: busy or right, in the broken partition; right elsewhere"
	t_exit 7 "partition: a lookup in the broken partition says busy (exit 7)" \
	    kv lookup p:1

	# A write elsewhere does not touch it.
	t_exit 0 "partition: a start in another partition works" \
	    kv start "$OTHER" -- /bin/sleep 600
	t_eq 0 "$("$REGFAULT" stats "$SEG" | awk '{ print $8 }')" \
	    "partition: ... and repairs nothing"
	# The daemon's next write to the partition repairs it.
	t0=$(t_ms)
	t_exit 0 "partition: a start in the broken partition works" \
	    timeout 10 "$KEYVISOR" start "$FRESH" -- /bin/sleep 600
	t1=$(t_ms)
	t_check "partition: ... promptly ($((t1 - t0)) ms)" test $((t1 - t0)) -lt 2000
	STATS=$("$REGFAULT" stats "$SEG")
	echo "# partition: registry stats after: $STATS"
	t_check "partition: the daemon repaired it (repairs >= 1)" \
	    test "$(echo "$STATS" | awk '{ print $8 }')" -ge 1
	t_check "partition: its sequence counter is even again" \
	    has " odd 0 " "$("$REGFAULT" state "$SEG" p:1)"
	t_check "partition: every supervised key is found with its pid" all_found
	t_eq 66 "$(ls_pids | wc -l)" "partition: 66 keys supervised"
	t_eq 66 "$(kv count)" "partition: 66 names registered (none lost, none duplicated)"
	t_eq 66 "$(echo "$STATS" | awk '{ print $2 }')" "partition: the registry's own count is 66"
	t_exit 1 "partition: the dead writer's key is not registered" \
	    kv lookup "$INTRUDER"
	# Writes in the repaired partition go on working: stop and start.
	t_exit 0 "partition: stop p:1" kv stop p:1
	t_exit 1 "partition: p:1 is gone" kv lookup p:1
	t_exit 0 "partition: start p:1 again" kv start p:1 -- /bin/sleep 600
	t_eq "$T_OUT" "$(lk p:1)" "partition: p:1 is registered with its new pid"
	f_stop "partition"
}

# ===========================================================================
# F. Signal storms.
# ===========================================================================
scenario_f() {
	f_start s -- "$KEYVISORD"
	kv start s:idle -- /bin/sleep 600 >/dev/null
	sleep 0.2
	FD0=$(fds)
	RSS0=$(rss_kb)
	O0=$(info_field orphans_reaped)
	# 10,000 orphans: each ( : & ) leaves a process that its subshell
	# abandons; it comes back to the daemon (a subreaper), exited or about
	# to, and only the daemon can reap it.
	t0=$(t_ms)
	t_exit 0 "storm: start the orphan maker" kv start s:storm \
	    --restart temporary -- sh -c \
	    'i=0; while [ $i -lt 10000 ]; do ( : & ); i=$((i + 1)); done; : >"$1"; exec sleep 600' \
	    sh "$T_DIR/storm.done"
	t_check "storm: 10,000 orphans made" t_until 60 test -e "$T_DIR/storm.done"
	t1=$(t_ms)
	t_check "storm: all 10,000 reaped and counted by the daemon" \
	    t_until 5 orphans_ge "$((O0 + 10000))"
	O1=$(info_field orphans_reaped)
	echo "# storm: 10,000 orphans in $((t1 - t0)) ms; orphans_reaped $O0 -> $O1"
	t_eq 10000 "$((O1 - O0))" "storm: orphans_reaped counts exactly them"
	t_check "storm: no zombie is left" t_until 2 no_zombie_children
	t_exit 0 "storm: the daemon serves" kv stop s:storm
	t_eq "$FD0" "$(fds)" "storm: the daemon's fd count is flat"
	RSS1=$(rss_kb)
	echo "# storm: RssAnon $RSS0 kB -> $RSS1 kB"
	# Reaping allocates nothing; a sanitizer build's allocator moves more.
	slack=256
	[ -n "$SANITIZED" ] && slack=1024
	t_check "storm: the daemon's heap is flat ($RSS0 -> $RSS1 kB)" \
	    test "$((RSS1 - RSS0))" -lt "$slack"
	f_stop "storm"

	# 200 SIGHUPs, each after a new configuration file, in two rounds of
	# 100 while 100 workers are started and 50 of them stopped.
	CONF="$T_DIR/hup.conf"
	printf '[kind hup]\ncommand = /bin/sleep 1000\n' >"$CONF"
	f_start h -- "$KEYVISORD" -c "$CONF"
	FD0=$(fds)
	hup_round 1
	RSS1=$(rss_kb)
	hup_round 2
	RSS2=$(rss_kb)
	R=$(f_log_count 'reloaded .*hup.conf: 1 kinds')
	echo "# reload storm: $R reloads logged for 200 SIGHUPs; RssAnon $RSS1 kB after round 1, $RSS2 kB after round 2"
	t_check "reload storm: the daemon reloaded ($R times; SIGHUPs that arrive together coalesce)" \
	    test "$R" -ge 2 -a "$R" -le 200
	if [ -n "$SANITIZED" ]; then
		t_skip "reload storm: the daemon's heap is flat" \
		    "a sanitizer build (LeakSanitizer checks leaks at the exit)"
	else
		t_check "reload storm: the daemon's heap is flat from round 1 to round 2 ($RSS1 -> $RSS2 kB)" \
		    test "$((RSS2 - RSS1))" -lt 256
	fi
	t_exit 0 "reload storm: shutdown" kv shutdown
	kv_daemon_wait 10
	t_eq 0 "$DAEMON_STATUS" "reload storm: the daemon exits 0 (no LeakSanitizer report)"
	t_check "reload storm: no sanitizer report in the log" kv_daemon_log_clean
}

# hup_round R: 100 SIGHUPs, each after writing configuration generation
# R*100+I (the command of kind hup: sleep 1000+generation), every 10 ms,
# while keys hR:1..hR:100 are started with that kind and the odd ones
# stopped again.  Then: every request succeeded, the last generation is in
# force, the 50 keys left run and are registered, no zombie; they are
# stopped and the daemon's fd count is back where it was.
hup_round() {
	_r=$1
	(
		i=1
		while [ $i -le 100 ]; do
			printf '[kind hup]\ncommand = /bin/sleep %d\n' \
			    $((1000 + _r * 100 + i)) >"$CONF.new"
			mv "$CONF.new" "$CONF"
			kill -HUP "$DPID" || exit 1
			sleep 0.01
			i=$((i + 1))
		done
	) &
	HUPPER=$!
	BG="$BG $HUPPER"
	bad=0
	: >"$T_DIR/hup.err"
	for j in $(seq 1 100); do
		kv start "h$_r:$j" --kind hup >/dev/null 2>>"$T_DIR/hup.err" ||
		    bad=$((bad + 1))
		if [ $((j % 2)) -eq 0 ]; then
			kv stop "h$_r:$((j - 1))" >/dev/null 2>>"$T_DIR/hup.err" ||
			    bad=$((bad + 1))
		fi
	done
	alive "$HUPPER" && _busy=yes || _busy=no
	bg_wait "$HUPPER"
	t_eq 0 "$?" "reload storm $_r: 100 SIGHUPs sent (still sending after the requests: $_busy)"
	t_eq 0 "$bad" "reload storm $_r: 100 starts and 50 stops succeeded $(head -3 "$T_DIR/hup.err")"
	_last=$((1000 + _r * 100 + 100))
	t_check "reload storm $_r: the last configuration is in force (sleep $_last)" \
	    t_until 2 sh -c '"$1" kinds | grep -q "sleep $2"' _ "$KEYVISOR" "$_last"
	t_eq 50 "$(ls_pids | grep -c "^h$_r:")" "reload storm $_r: the 50 keys not stopped run"
	t_check "reload storm $_r: each is found with its pid" all_found
	t_check "reload storm $_r: no zombie" t_until 2 no_zombie_children
	for j in $(seq 2 2 100); do
		kv stop "h$_r:$j" >/dev/null || bad=$((bad + 1))
	done
	t_eq "0 1" "$bad $(kv ls | wc -l)" "reload storm $_r: all stopped"
	t_check "reload storm $_r: the daemon's fd count is back to $FD0" \
	    t_until 2 fds_cmp -eq "$FD0"
}

# ===========================================================================
# V. keyvisord under valgrind (test_faults.sh valgrind).
# ===========================================================================
# 20 workers started (10 with a command, 10 of a kind), 4 SIGKILLed and
# restarted, 3 stopped, 1 restarted, a reload by request and one by SIGHUP,
# a start that cannot exec, shutdown; valgrind must find no error and no
# definite or indirect leak.  Valgrind runs clone(CLONE_VM | CLONE_VFORK)
# as a plain fork (spawn.c), so an exec failure is not seen by the spawn:
# the start succeeds and the child exits 127.  The scenario accepts either.
scenario_v() {
	if ! command -v valgrind >/dev/null 2>&1; then
		echo "1..0 # SKIP valgrind not found"
		exit 0
	fi
	if [ -n "$SANITIZED" ]; then
		echo "1..0 # SKIP a sanitizer build: valgrind cannot run it"
		exit 0
	fi
	CONF="$T_DIR/vg.conf"
	printf '[kind vg]\ncommand = /bin/sleep 600\n' >"$CONF"
	t0=$(t_ms)
	# A log per process: a child that fails to exec exits under valgrind
	# too, with its own summary.
	f_start v 60 -- valgrind --leak-check=full --error-exitcode=3 \
	    --errors-for-leak-kinds=definite,indirect \
	    --log-file="$T_DIR/vg.%p.log" "$KEYVISORD" -c "$CONF"
	VGLOG="$T_DIR/vg.$DPID.log"
	seq 1 10 | sed 's/^/v:/' | kv start --stdin -- /bin/sleep 600 \
	    >"$T_DIR/v.started"
	seq 11 20 | sed 's/^/v:/' | kv start --stdin --kind vg \
	    >>"$T_DIR/v.started"
	t_eq 20 "$(wc -l <"$T_DIR/v.started")" "valgrind: 20 workers started"
	if ! alive "$DPID"; then
		# Valgrind supports clone() for threads, fork and vfork only:
		# CLONE_VM | CLONE_VFORK (| SIGCHLD) passes as a fork, anything
		# more (CLONE_FILES) makes it end the process.
		t_fail "valgrind: the daemon survives its first spawn" \
		    "$(grep -A3 'Unsupported clone\|unimplemented' "$VGLOG" | head -8)"
		kv_daemon_wait 1
		t_done
		exit
	fi
	t_check "valgrind: all 20 registered" t_until 10 count_is 20
	for i in 1 5 12 17; do
		P=$(lk "v:$i")
		kill -KILL "$P"
		t_check "valgrind: v:$i restarted after SIGKILL" t_until 10 changed "v:$i" "$P"
	done
	for i in 2 3 13; do
		t_exit 0 "valgrind: stop v:$i" kv stop "v:$i"
	done
	t_exit 0 "valgrind: restart v:4" kv restart v:4
	printf '[kind vg]\ncommand = /bin/sleep 601\n[kind vg2]\ncommand = /bin/sleep 602\n' >"$CONF"
	t_exit 0 "valgrind: reload" kv reload
	kill -HUP "$DPID"
	t_exit 0 "valgrind: start of a kind after the reload" kv start v:21 --kind vg2
	kv start v:bad --restart temporary -- "$T_DIR/missing" >/dev/null 2>&1
	t_check "valgrind: a start that cannot exec leaves no key behind" \
	    t_until 10 sh -c '! "$1" status v:bad >/dev/null 2>&1' _ "$KEYVISOR"
	t_check "valgrind: every supervised key is found with its pid" all_found
	t_exit 0 "valgrind: shutdown" kv shutdown
	kv_daemon_wait 60
	t1=$(t_ms)
	sed -n '/HEAP SUMMARY/,$p' "$VGLOG" | sed 's/^/# /'
	echo "# valgrind: scenario took $((t1 - t0)) ms"
	t_eq 0 "$DAEMON_STATUS" "valgrind: the daemon exits 0 (3: valgrind found errors or leaks)"
	t_check "valgrind: ERROR SUMMARY: 0 errors" \
	    grep -q 'ERROR SUMMARY: 0 errors' "$VGLOG"
	if [ "$DAEMON_STATUS" -ne 0 ]; then
		grep -v '^==[0-9]*== *$' "$VGLOG" | head -60 | sed 's/^/# /'
	fi
}

case $MODE in
valgrind) scenario_v ;;
all) for s in a b c d e f; do "scenario_$s"; done ;;
*) for s in $(echo "$MODE" | tr ',' ' '); do "scenario_$s"; done ;; # a,c,...
esac
t_done
