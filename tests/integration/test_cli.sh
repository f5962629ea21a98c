#!/bin/sh
# keyvisor(1)'s contract, command by command, against the real daemon:
# stdout, stderr and exit status of every command; invalid keys, usage
# errors, no daemon, a stopped daemon, another uid; garbage and a slow
# client on the control socket; a second daemon; a SIGKILLed daemon's stale
# socket and registry; and the exit-code table of keyvisor.1 against
# exitcodes.h.  Every CLI call that needs the daemon runs under timeout(1),
# so a daemon that stalls fails a check instead of hanging the file.
# shellcheck disable=SC2016,SC2119 # single-quoted sh -c scripts; no-arg calls
. "$KV_SRC/tests/integration/lib.sh"

# UBSan only reports by default: make a report end the process, so that
# it shows in the daemon's exit status (ASan and LSan already do).
: "${UBSAN_OPTIONS:=halt_on_error=1:print_stacktrace=1}"
export UBSAN_OPTIONS

W=$KV_WORKER
SHM=/dev/shm/keyvisor.$KV_INSTANCE

# kt ARGS...: keyvisor ARGS under a 10 s timeout, for every call that talks
# to the daemon (a stalled daemon then fails a check instead of hanging).
kt() { timeout 10 "$KEYVISOR" "$@"; }

# ktime CMD...: like t_exit's command, but also sets $T_MS to its run time.
ktime() {
	_t0=$(t_ms)
	"$@"
	_rc=$?
	T_MS=$(($(t_ms) - _t0))
	return $_rc
}

# grep_q PATTERN TEXT: extended regex PATTERN matches a line of TEXT.
grep_q() { printf '%s\n' "$2" | LC_ALL=C grep -Eq -- "$1"; }

# count_lines PATTERN FILE
count_lines() { grep -c -- "$1" "$2" 2>/dev/null || true; }

# ---------------------------------------------------------------------------
# 1. No daemon needed: the exit-code table, route, and "no daemon" errors.
# ---------------------------------------------------------------------------

# keyvisor.1's EXIT STATUS entries (".It N" and the line after) against
# exitcodes.h's enum (EXIT_X = N, /* meaning */): same codes, same words.
man_codes=$(awk '/^\.Sh EXIT STATUS/ { s = 1; next } /^\.Sh/ { s = 0 }
    s && /^\.It [0-9]+$/ { c = $2; getline; print c "\t" $0 }' \
	"$KV_SRC/man/keyvisor.1")
hdr_codes=$(sed -n 's|^[[:space:]]*EXIT_[A-Z_]*[[:space:]]*=[[:space:]]*\([0-9][0-9]*\),[[:space:]]*\(/\*[[:space:]]*\(.*[^[:space:]]\)[[:space:]]*\*/\)\{0,1\}.*$|\1\t\3|p' \
	"$KV_SRC/supervisord/exitcodes.h")
t_eq "0 1 2 3 4 5 6 7 8" "$(printf '%s\n' "$man_codes" | cut -f1 | sort -n | xargs)" \
	"keyvisor.1 EXIT STATUS lists the codes 0..8"
t_eq "$(printf '%s\n' "$man_codes" | cut -f1 | sort -n | xargs)" \
	"$(printf '%s\n' "$hdr_codes" | cut -f1 | sort -n | xargs)" \
	"exitcodes.h and keyvisor.1 define the same exit codes"
mismatch=$(printf '%s\n%s\n' "$man_codes" "$hdr_codes" | awk -F '\t' \
    -v m="$(printf '%s\n' "$man_codes" | wc -l)" '
    function words(s,   a, n, i, w) {
	s = tolower(s); gsub(/[^a-z0-9_]+/, " ", s); n = split(s, a, " ")
	w = " "; for (i = 1; i <= n; i++) w = w a[i] " "; return w }
    function missing(a, b,   n, i, x, out) {
	n = split(a, x, " "); out = ""
	for (i = 1; i <= n; i++) if (index(b, " " x[i] " ") == 0) out = out " " x[i]
	return out }
    NR <= m { man[$1] = words($2); next }
    { hdr[$1] = words($2) }
    END {
	for (c in man) {
		if (!(c in hdr)) continue
		if (hdr[c] == " " && c == 0) continue  # EXIT_OK needs no comment
		if (hdr[c] == " ") { print c ": no comment in exitcodes.h"; continue }
		a = missing(hdr[c], man[c]); b = missing(man[c], hdr[c])
		if (a != "") print c ": exitcodes.h words not in keyvisor.1:" a
		if (b != "") print c ": keyvisor.1 words not in exitcodes.h:" b
	} }')
t_eq "" "$mismatch" "exit-code meanings agree between keyvisor.1 and exitcodes.h"

# route: rendezvous hashing with the documented fixed seed, no daemon.
t_exit 0 "route works without a daemon" kv route user:42 node-a node-b node-c
t_eq node-b "$T_OUT" "route user:42 over a,b,c is node-b (keyvisor.1 example)"
t_exit 0 "route with a fourth shard" kv route user:42 node-a node-b node-c node-d
t_eq node-d "$T_OUT" "route user:42 over a,b,c,d is node-d (keyvisor.1 example)"
t_exit 0 "route of another key" kv route user:7 node-a node-b node-c node-d
t_eq node-a "$T_OUT" "route user:7 over a,b,c,d is node-a (keyvisor.1 example)"
r1=$(kv route user:42 node-c node-a node-b) r2=$(kv route user:42 node-b node-c node-a)
t_eq "node-b node-b" "$r1 $r2" "route ignores the order of the shards"
moved=0 bad=""
for rk in $(seq 1 60); do
	a=$(kv route "k$rk" s1 s2 s3) b=$(kv route "k$rk" s1 s2 s3 s4)
	[ "$a" = "$b" ] && continue
	[ "$b" = s4 ] && moved=$((moved + 1)) || bad="$bad k$rk:$a->$b"
done
t_eq "" "$bad" "adding a shard moves keys only to the new shard"
t_check "adding a 4th shard moves about 1/4 of 60 keys (got $moved)" \
	test "$moved" -ge 5 -a "$moved" -le 28
t_exit 2 "route with no shard is a usage error" kv route user:42
t_check "route usage error prints a usage line" grep_q '^usage: ' "$T_ERR"

# No daemon for the instance: exit 5 everywhere.
t_exit 5 "start with no daemon exits 5" kt start nd -- "$W"
t_check "start with no daemon says so on stderr" grep_q '^keyvisor: .*daemon' "$T_ERR"
t_exit 5 "ls with no daemon exits 5" kt ls
t_exit 5 "stop with no daemon exits 5" kt stop nd
t_exit 5 "lookup with no registry segment exits 5" kv lookup nd
t_check "lookup with no segment names the problem" grep_q '^keyvisor: .*(registry|segment|daemon)' "$T_ERR"
t_exit 5 "count with no registry segment exits 5" kv count

# ---------------------------------------------------------------------------
# 2. The commands, one by one.
# ---------------------------------------------------------------------------
kv_daemon_start

# start
t_exit 0 "start prints a pid and exits 0" kt start k1 -- "$W"
P1=$T_OUT
t_check "start prints the pid alone" is_pid "$P1"
t_eq 1 "$(wc -l <"$T_DIR/stdout")" "start prints exactly one line"
t_eq "" "$T_ERR" "start prints nothing on stderr"
t_check "the started pid is alive" alive "$P1"
t_eq "$P1" "$(kv_pgid "$P1")" "the worker is its own process-group leader"
t_eq k1 "$(kv_environ "$P1" KEYVISOR_KEY)" "worker has KEYVISOR_KEY"
t_eq "$KV_INSTANCE" "$(kv_environ "$P1" KEYVISOR_INSTANCE)" "worker has KEYVISOR_INSTANCE"
t_eq 0 "$(kv_environ "$P1" KEYVISOR_INCARNATION)" "worker has KEYVISOR_INCARNATION=0"

t_exit 3 "start of a started key exits 3" kt start k1 -- "$W"
t_eq "" "$T_OUT" "start of a started key prints nothing on stdout"
t_check "start of a started key: 'keyvisor: k1: already started...'" \
	grep_q "^keyvisor: k1: already started" "$T_ERR"
t_check "start of a started key names the existing pid" grep_q "$P1" "$T_ERR"
t_eq "$P1" "$(kv lookup k1)" "the refused start left the first worker registered"

# ensure
t_exit 0 "ensure of an existing key exits 0" kt ensure k1 -- "$W"
t_eq "$P1" "$T_OUT" "ensure of an existing key prints its pid"
t_exit 0 "ensure of a new key exits 0" kt ensure k2 -- "$W"
P2=$T_OUT
t_check "ensure of a new key prints a new pid" test "$P2" != "$P1"
t_check "ensure of a new key started a live worker" alive "$P2"
t_eq "$P2" "$(kv lookup k2)" "ensure's worker is registered"

# lookup
t_exit 0 "lookup exits 0" kv lookup k1
t_eq "$P1" "$T_OUT" "lookup prints the pid alone"
t_exit 0 "lookup --json exits 0" kv lookup --json k1
t_eq "k1 $P1 0" "$(printf '%s' "$T_OUT" | kv_json '"%s %s %s" % (j["key"], j["pid"], j["incarnation"])')" \
	"lookup --json has key, pid and incarnation"
t_eq "$DPID" "$(printf '%s' "$T_OUT" | kv_json 'j["owner"]')" "lookup --json owner is the daemon"
t_exit 1 "lookup of an unknown key exits 1" kv lookup nosuch
t_eq "keyvisor: nosuch: not found" "$T_ERR" "lookup of an unknown key: 'keyvisor: KEY: not found'"
t_eq "" "$T_OUT" "lookup of an unknown key prints nothing on stdout"

# status
t_exit 0 "status exits 0" kt status k1
t_check "status has 'key: k1'" grep_q '^key: k1$' "$T_OUT"
t_check "status has 'pid: PID'" grep_q "^pid: $P1\$" "$T_OUT"
t_check "status has 'state: running'" grep_q '^state: running$' "$T_OUT"
t_check "status has 'incarnation: 0'" grep_q '^incarnation: 0$' "$T_OUT"
t_check "status has 'restart: permanent'" grep_q '^restart: permanent$' "$T_OUT"
t_check "status has the command" grep_q "^command: .*kv-worker\$" "$T_OUT"
t_exit 0 "status --json exits 0" kt status --json k1
t_eq "k1 $P1 $P1 running" "$(printf '%s' "$T_OUT" | kv_json '"%s %s %s %s" % (j["key"], j["pid"], j["pgid"], j["state"])')" \
	"status --json is the worker object"
t_exit 1 "status of an unknown key exits 1" kt status nosuch
t_check "status of an unknown key: 'keyvisor: nosuch: ...'" grep_q '^keyvisor: nosuch: ' "$T_ERR"

# ls, count, patterns
kt start grp:a -- "$W" >/dev/null
kt start grp:b -- "$W" >/dev/null
t_exit 0 "ls exits 0" kt ls
t_check "ls prints the table header" grep_q \
	'^KEY +PID +STATE +INCARNATION +UPTIME +LAST-EXIT$' "$(printf '%s\n' "$T_OUT" | head -n 1)"
t_check "ls has a row for k1 (key, pid, running, 0, uptime, -)" grep_q \
	"^k1 +$P1 +running +0 +[0-9]+s +-\$" "$T_OUT"
t_eq "grp:a grp:b k1 k2" "$(printf '%s\n' "$T_OUT" | sed 1d | awk '{ print $1 }' | xargs)" \
	"ls lists every key, sorted"
t_eq "$(printf '%s\n' "$T_OUT" | head -n 1 | awk '{ print index($0, "PID") }')" \
	"$(printf '%s\n' "$T_OUT" | awk -v p="$P1" '$1 == "k1" { print index($0, p) }')" \
	"ls columns are aligned"
t_exit 0 "ls --json exits 0" kt ls --json
t_eq "$P1 running" "$(printf '%s' "$T_OUT" | kv_json '" ".join("%s %s" % (w["pid"], w["state"]) for w in (j if isinstance(j, list) else j["workers"]) if w["key"] == "k1")')" \
	"ls --json holds the worker k1"
t_exit 0 "ls PATTERN exits 0" kt ls 'grp:*'
t_eq "grp:a grp:b" "$(printf '%s\n' "$T_OUT" | sed 1d | awk '{ print $1 }' | xargs)" \
	"ls 'grp:*' shows only the matching keys"
t_exit 0 "ls of a pattern matching nothing exits 0" kt ls 'zzz*'
t_eq 1 "$(printf '%s\n' "$T_OUT" | wc -l)" "ls matching nothing prints only the header"
t_exit 0 "count exits 0" kv count
t_eq 4 "$T_OUT" "count counts every live name"
t_exit 0 "count PATTERN exits 0" kv count 'grp:*'
t_eq 2 "$T_OUT" "count 'grp:*' counts the matching names"

# info
t_exit 0 "info exits 0" kt info
t_check "info has 'instance: NAME'" grep_q "^instance: $KV_INSTANCE\$" "$T_OUT"
t_check "info has 'pid: DAEMON_PID'" grep_q "^pid: $DPID\$" "$T_OUT"
t_exit 0 "info --json exits 0" kt info --json
t_eq "$KV_INSTANCE $DPID 4" "$(printf '%s' "$T_OUT" | kv_json '"%s %s %s" % (j["instance"], j["pid"], j["workers"])')" \
	"info --json has instance, daemon pid, workers"

# signal: the worker is a shell trapping HUP, so the shell is the pid.
HUPF=$T_DIR/hup.log
: >"$HUPF"
kt start sig -- sh -c 'trap "echo got >> \"\$0\"" HUP; echo ready >> "$0"; while :; do sleep 0.1; done' "$HUPF" >"$T_DIR/sig.pid"
PS=$(cat "$T_DIR/sig.pid")
t_check "the trapping worker is ready" t_until 5 grep -q ready "$HUPF"
nhup=0 # not n: t_until uses it
for s in HUP SIGHUP 1; do
	nhup=$((nhup + 1))
	t_exit 0 "signal KEY $s exits 0" kt signal sig "$s"
	t_check "the worker got signal '$s' (HUP)" t_until 3 sh -c '[ "$(grep -c got "$1")" -ge "$2" ]' _ "$HUPF" "$nhup"
done
t_check "the worker survived its HUPs (same pid)" test "$(kv lookup sig)" = "$PS"
t_exit 2 "signal with an unknown signal name exits 2" kt signal sig NOSUCHSIG
t_exit 1 "signal of an unknown key exits 1" kt signal nosuch HUP

# signal --group: the worker's child records HUP only if the group got it.
GRPF=$T_DIR/grp.log
: >"$GRPF"
kt start grp -- sh -c 'trap "echo parent >> \"\$0\"" HUP; sh -c "trap \"echo child >> \\\"\\\$0\\\"\" HUP; echo ready >> \"\$0\"; while :; do sleep 0.1; done" "$0" & while :; do sleep 0.1; done' "$GRPF" >/dev/null
t_check "the group worker and its child are ready" t_until 5 grep -q ready "$GRPF"
kt signal grp HUP
t_check "signal without --group reaches the worker" t_until 3 grep -q parent "$GRPF"
sleep 0.3
t_eq 0 "$(count_lines child "$GRPF")" "signal without --group does not reach the worker's child"
t_exit 0 "signal --group exits 0" kt signal --group grp HUP
t_check "signal --group reaches the worker's child" t_until 3 grep -q child "$GRPF"
t_check "signal --group reaches the worker too" t_until 3 sh -c '[ "$(grep -c parent "$1")" -ge 2 ]' _ "$GRPF"

# wait
t_exit 0 "wait on a running key exits 0" kt wait k1
t_eq "$P1" "$T_OUT" "wait on a running key prints its pid"
ktime t_exit 7 "wait --timeout 0.3 on a key that never comes exits 7" \
	kt wait never --timeout 0.3
t_check "wait --timeout 0.3 returns in well under 2 s (${T_MS} ms)" test "$T_MS" -lt 1500
t_check "wait --timeout gave up no sooner than 0.3 s (${T_MS} ms)" test "$T_MS" -ge 250
# A key that exists but will never run (failed at once): the timeout path.
kt start dud --max-restarts 0 -- "$W" --exit-after 0 --code 3 >/dev/null
t_check "a worker that exits at once with no restarts allowed fails" \
	t_until 5 sh -c '"$1" status dud | grep -q "^state: failed"' _ "$KEYVISOR"
ktime t_exit 7 "wait --timeout 0.3 on a failed key exits 7" kt wait dud --timeout 0.3
t_check "wait --timeout 0.3 on a failed key is prompt (${T_MS} ms)" test "$T_MS" -lt 1500
# wait --gone blocks until the key goes away.
kt wait k2 --gone --timeout 5 >"$T_DIR/gone.out" 2>&1 &
WGPID=$!
sleep 0.2
t_check "wait --gone on a supervised key is still waiting" alive "$WGPID"

# stop
t_exit 0 "stop exits 0" kt stop k2
t_check "the worker is gone as soon as stop returns" dead "$P2"
t_exit 1 "stop released the name (lookup exits 1)" kv lookup k2
wait "$WGPID"
t_eq 0 "$?" "wait --gone returned 0 when the key was stopped"
t_exit 0 "wait --gone after stop exits 0" kt wait k2 --gone
t_exit 1 "stop of an unknown key exits 1" kt stop k2
t_check "stop of an unknown key: 'keyvisor: k2: ...'" grep_q '^keyvisor: k2: ' "$T_ERR"
t_exit 0 "a stopped key can be started afresh" kt start k2 -- "$W"
P2=$T_OUT

# restart
t_exit 0 "restart exits 0" kt restart k1
NP1=$T_OUT
t_check "restart prints a new pid" sh -c 'test "$1" != "$2"' _ "$NP1" "$P1"
t_check "restart prints a pid" is_pid "$NP1"
t_check "the old worker is dead when restart returns" dead "$P1"
t_check "the new worker is alive" alive "$NP1"
t_eq "$NP1" "$(kv lookup k1)" "lookup shows the new pid after restart"
t_exit 1 "restart of an unknown key exits 1" kt restart nosuch
P1=$NP1

# ---------------------------------------------------------------------------
# 3. Exec failure, invalid keys, usage errors.
# ---------------------------------------------------------------------------
t_exit 8 "start of /nonexistent exits 8" kt start ex1 -- /nonexistent/cmd
t_check "start of /nonexistent says 'No such file or directory'" \
	grep_q '^keyvisor: ex1: .*No such file or directory' "$T_ERR"
t_eq "" "$T_OUT" "start of /nonexistent prints no pid"
t_exit 1 "nothing registered after an exec failure (lookup exits 1)" kv lookup ex1
t_check "nothing supervised after an exec failure (ls)" \
	sh -c '! timeout 10 "$1" ls | grep -q "^ex1 "' _ "$KEYVISOR"
t_exit 1 "nothing supervised after an exec failure (status exits 1)" kt status ex1
printf '#!/bin/sh\nexit 0\n' >"$T_DIR/noexec"
chmod 644 "$T_DIR/noexec"
t_exit 8 "start of a non-executable file exits 8" kt start ex2 -- "$T_DIR/noexec"
t_check "start of a non-executable file says 'Permission denied'" \
	grep_q '^keyvisor: ex2: .*Permission denied' "$T_ERR"
t_exit 1 "nothing registered after EACCES (lookup exits 1)" kv lookup ex2
t_exit 8 "ensure of a new key whose exec fails exits 8" kt ensure ex3 -- /nonexistent/cmd

TAB=$(printf '\t')
NAMES=$(kv count)
LONG=$(printf '%0256d' 0 | tr 0 x)
BAD=$(printf '\377')
for cmd in start lookup stop; do
	for case in "space:a b:whitespace|space" "tab:a${TAB}b:whitespace|control" \
	    "empty::empty" "256 bytes:$LONG:long|255" "invalid UTF-8:$BAD:UTF-8|utf-8|UTF8"; do
		what=${case%%:*} rest=${case#*:}
		key=${rest%:*} why=${rest##*:}
		if [ "$cmd" = start ]; then
			t_exit 2 "$cmd of a key with $what exits 2" kt start "$key" -- "$W"
		else
			t_exit 2 "$cmd of a key with $what exits 2" kt "$cmd" "$key"
		fi
		t_check "$cmd of a key with $what gives the reason on stderr" \
			sh -c 'printf "%s\n" "$1" | LC_ALL=C grep -Eq "^keyvisor: .*($2)"' _ "$T_ERR" "$why"
	done
done
LONG255=$(printf '%0255d' 0 | tr 0 y)
t_exit 0 "a 255-byte key is valid" kt start "$LONG255" -- "$W"
t_eq "$T_OUT" "$(kv lookup "$LONG255")" "a 255-byte key can be looked up"
kt stop "$LONG255" >/dev/null
t_eq "$NAMES" "$(kv count)" "nothing registered under an invalid key (count)"

for args in "frobnicate" "ls --bogus" "lookup" "stop" "start" "start k9" "signal k1" \
    "wait k1 --timeout" "--bogus ls"; do
	# shellcheck disable=SC2086 # split on purpose
	t_exit 2 "usage error: keyvisor $args exits 2" kt $args
	t_check "usage error: keyvisor $args says why and prints a usage line" sh -c \
		'printf "%s\n" "$1" | head -n 1 | grep -q "^keyvisor: " && printf "%s\n" "$1" | grep -q "^usage: "' _ "$T_ERR"
done
t_exit 2 "start without CMD after '--' exits 2" kt start k9 --
t_check "start without CMD prints a usage line" grep_q '^usage: ' "$T_ERR"
t_exit 1 "usage errors started nothing" kv lookup k9

# ---------------------------------------------------------------------------
# 4. lookup while the daemon is stopped.
# ---------------------------------------------------------------------------
kill -STOP "$DPID"
ktime t_exit 0 "lookup answers while the daemon is SIGSTOPped" kt lookup k1
L_OUT=$T_OUT
kill -CONT "$DPID"
t_eq "$P1" "$L_OUT" "lookup during SIGSTOP gives the right pid"
t_check "lookup during SIGSTOP is prompt (${T_MS} ms < 1000)" test "$T_MS" -lt 1000
t_exit 0 "the daemon serves again after SIGCONT" kt ls

# ---------------------------------------------------------------------------
# 5. Another uid.
# ---------------------------------------------------------------------------
if ! kv_as_nobody "$KEYVISOR" --version >/dev/null 2>&1; then
	why="not root, or no setpriv/runuser, or nobody cannot run $KEYVISOR"
	for desc in "ls as another uid exits 6" "lookup as another uid exits 6" \
	    "the daemon refuses another uid (SO_PEERCRED) with exit 6"; do
		t_skip "$desc" "$why"
	done
else
	t_exit 6 "ls as another uid exits 6 (socket directory 0700)" kv_as_nobody timeout 10 "$KEYVISOR" ls
	t_check "ls as another uid says why" grep_q '^keyvisor: .*(denied|permission)' "$T_ERR"
	t_exit 6 "lookup as another uid exits 6 (segment 0640)" kv_as_nobody timeout 10 "$KEYVISOR" lookup k1
	t_check "lookup as another uid says why" grep_q '^keyvisor: .*(denied|permission)' "$T_ERR"
	t_eq 640 "$(stat -c %a "$SHM")" "the registry segment is 0640"
	# Open the way to the socket: now the daemon's peer check must refuse.
	chmod 711 "$T_DIR"
	chmod 666 "$KEYVISOR_SOCKET"
	t_exit 6 "the daemon refuses another uid (SO_PEERCRED) with exit 6" \
		kv_as_nobody timeout 10 "$KEYVISOR" ls
	t_check "the refusal says permission denied" grep_q '^keyvisor: .*permission denied' "$T_ERR"
	chmod 660 "$KEYVISOR_SOCKET"
	chmod 700 "$T_DIR"
	t_exit 0 "the daemon still serves root after refusing nobody" kt ls
fi

# ---------------------------------------------------------------------------
# 6. Garbage on the control socket.
# ---------------------------------------------------------------------------
usage_reply() { # LINE: an error reply with code usage
	printf '%s' "$1" | kv_json 'j["ok"] is False and j["code"] == "usage" and isinstance(j["error"], str)' | grep -qx true
}
all_usage() { # N FILE: FILE holds exactly N reply lines, each a usage error
	[ "$(grep -vc '^#' "$2")" -eq "$1" ] || return 1
	grep -v '^#' "$2" | while IFS= read -r l; do usage_reply "$l" || exit 1; done
}

# Random bytes on one line (no newline inside): one usage reply.
head -c 4096 /dev/urandom | tr -d '\n' >"$T_DIR/rand"
echo >>"$T_DIR/rand"
kv_raw 1 <"$T_DIR/rand" >"$T_DIR/raw.out" 2>&1
t_check "random bytes get one usage error reply" all_usage 1 "$T_DIR/raw.out"

# Random bytes with newlines: one usage reply per line.
head -c 8192 /dev/urandom >"$T_DIR/rand2"
echo >>"$T_DIR/rand2"
nl=$(tr -cd '\n' <"$T_DIR/rand2" | wc -c)
kv_raw "$nl" <"$T_DIR/rand2" >"$T_DIR/raw.out" 2>&1
t_check "random bytes with newlines get one usage reply per line ($nl)" all_usage "$nl" "$T_DIR/raw.out"

# Invalid JSON, an unknown op, a JSON array, a string, on one connection:
# one usage reply each, in order, and the connection still serves after.
printf '%s\n' 'not json' '{' '{"op":' '{"op":"frobnicate"}' '[1,2,3]' \
	'"ls"' '{"op":"ls","pattern":7}' '{"op":"ls"}' >"$T_DIR/bad"
kv_raw 8 <"$T_DIR/bad" >"$T_DIR/raw.out" 2>&1
head -n 7 "$T_DIR/raw.out" >"$T_DIR/raw7"
t_check "invalid JSON, unknown op, array, string, ill-typed field: 7 usage replies" all_usage 7 "$T_DIR/raw7"
t_check "the unknown op's reply names it" grep -q frobnicate "$T_DIR/raw.out"
t_eq true "$(sed -n 8p "$T_DIR/raw.out" | kv_json 'j["ok"] is True and any(w["key"] == "k1" for w in j["workers"])')" \
	"after the garbage the same connection still answers ls"

# A key the CLI would refuse, sent raw: the daemon checks keys too.
printf '%s\n' '{"op":"start","key":"a b","argv":["/bin/true"]}' \
	'{"op":"start","key":"","argv":["/bin/true"]}' >"$T_DIR/badkey"
kv_raw 2 <"$T_DIR/badkey" >"$T_DIR/raw.out" 2>&1
t_eq "invalid_key invalid_key" "$(grep -v '^#' "$T_DIR/raw.out" | while IFS= read -r l; do printf '%s' "$l" | kv_json 'j["code"]'; done | xargs)" \
	"the daemon refuses invalid keys with code invalid_key"

# An unterminated 70,000-byte line: one reply, then the connection closes.
head -c 70000 /dev/zero | tr '\0' x >"$T_DIR/huge"
kv_raw <"$T_DIR/huge" >"$T_DIR/raw.out" 2>&1
t_check "an unterminated 70,000-byte line gets one usage reply" all_usage 1 "$T_DIR/raw.out"
t_eq "#EOF" "$(tail -n 1 "$T_DIR/raw.out")" "then the daemon closes that connection"

t_exit 0 "after the garbage the daemon still serves ls" kt ls
t_check "after the garbage k1 is unchanged" sh -c 'test "$("$1" lookup k1)" = "$2"' _ "$KEYVISOR" "$P1"
t_check "after the garbage the workers still run" alive "$P1"
t_check "after the garbage the daemon still runs" alive "$DPID"

# ---------------------------------------------------------------------------
# 7. A second daemon for the same instance.
# ---------------------------------------------------------------------------
timeout 5 "$KEYVISORD" >"$T_DIR/second.out" 2>&1
rc=$?
t_check "a second daemon for the instance refuses to start (exit $rc)" \
	test "$rc" -ne 0 -a "$rc" -ne 124 -a "$rc" -lt 128
t_check "the second daemon says 'already running'" grep -q 'already running' "$T_DIR/second.out"
t_check "the first daemon still runs" alive "$DPID"
t_exit 0 "the first daemon still serves ls" kt ls
t_check "the socket is still there" test -S "$KEYVISOR_SOCKET"
t_eq "$P1" "$(kv lookup k1)" "the registry still holds k1"

# ---------------------------------------------------------------------------
# 8. A client that never reads, holding big ls replies.
# ---------------------------------------------------------------------------
seq 1 300 | sed 's/^/many:/' | kt start --stdin -- "$W" >"$T_DIR/many" 2>"$T_DIR/many.err"
t_eq 300 "$(wc -l <"$T_DIR/many")" "start --stdin started 300 workers"
python3 -c '
import json, os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(sys.argv[1])
s.sendall(b"{\"op\":\"ls\"}\n" * 80)
open(sys.argv[2], "w").write("sent\n")
end = time.monotonic() + 30
while not os.path.exists(sys.argv[3]) and time.monotonic() < end:
    time.sleep(0.05)
# Now read: every reply must still come, whole and in order.
buf, n, end = b"", 0, time.monotonic() + 10
s.settimeout(10)
while n < 80 and time.monotonic() < end:
    b = s.recv(1 << 20)
    if not b:
        break
    buf += b
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        if json.loads(line).get("ok") is True:
            n += 1
open(sys.argv[4], "w").write("%d\n" % n)
' "$KEYVISOR_SOCKET" "$T_DIR/slow.ready" "$T_DIR/slow.go" "$T_DIR/slow.got" &
SLOW=$!
t_check "the slow client sent its requests" t_until 5 test -s "$T_DIR/slow.ready"
sleep 0.3
ktime t_exit 0 "ls answers while a client does not read" kt ls 'k*'
t_check "that ls was prompt (${T_MS} ms < 1000)" test "$T_MS" -lt 1000
ktime t_exit 0 "start answers while a client does not read" kt start slow1 -- "$W"
t_check "that start was prompt (${T_MS} ms < 1000)" test "$T_MS" -lt 1000
ktime t_exit 0 "stop answers while a client does not read" kt stop slow1
t_check "that stop was prompt (${T_MS} ms < 1000)" test "$T_MS" -lt 1000
ktime t_exit 0 "info answers while a client does not read" kt info
t_check "that info was prompt (${T_MS} ms < 1000)" test "$T_MS" -lt 1000
t_check "the slow client is still connected (the test is valid)" alive "$SLOW"
: >"$T_DIR/slow.go"
t_check "the slow client, reading at last, gets its 80 ls replies" \
	t_until 15 grep -qx 80 "$T_DIR/slow.got"
kill "$SLOW" 2>/dev/null
wait "$SLOW" 2>/dev/null
t_exit 0 "the daemon serves after the slow client left" kt count 'many:*'
t_eq 300 "$T_OUT" "all 300 workers are still registered"

# ---------------------------------------------------------------------------
# 9. shutdown.
# ---------------------------------------------------------------------------
ALL=$(kt ls --json | kv_json '" ".join(str(w["pid"]) for w in (j if isinstance(j, list) else j["workers"]) if w["pid"] > 0)')
t_check "collected the workers' pids ($(echo "$ALL" | wc -w))" test "$(echo "$ALL" | wc -w)" -ge 303
t_exit 0 "shutdown exits 0" kt shutdown
kv_daemon_wait 15
t_eq 0 "$DAEMON_STATUS" "the daemon exits 0 after shutdown"
t_check "the socket file is gone after shutdown" test ! -e "$KEYVISOR_SOCKET"
t_check "the registry segment is gone after shutdown" test ! -e "$SHM"
# shellcheck disable=SC2086 # a list of pids
t_check "every worker is gone after shutdown" dead $ALL
t_check "no sanitizer report in the log so far" kv_daemon_log_clean
t_exit 5 "after shutdown, ls exits 5" kt ls
t_exit 5 "after shutdown, lookup exits 5" kv lookup k1
t_exit 0 "route still works with the daemon stopped" kv route user:42 node-a node-b node-c
t_eq node-b "$T_OUT" "route gives the same shard with the daemon stopped"

# ---------------------------------------------------------------------------
# 10. A SIGKILLed daemon: stale socket and registry.
# ---------------------------------------------------------------------------
kv_daemon_start
for k in st1 st2 st3; do kt start "$k" -- "$W" >>"$T_DIR/st.pids"; done
ST=$(xargs <"$T_DIR/st.pids")
t_eq 3 "$(echo "$ST" | wc -w)" "three workers run before the SIGKILL"
ST1=$(kv lookup st1)
kill -KILL "$DPID"
wait "$DPID" 2>/dev/null
DPID=""
# shellcheck disable=SC2086 # a list of pids
t_check "the workers die with the daemon (PDEATHSIG)" t_until 2 dead $ST
t_check "the stale socket file is left behind" test -S "$KEYVISOR_SOCKET"
t_check "the stale registry segment is left behind" test -e "$SHM"
t_exit 5 "ls after the daemon was killed exits 5" kt ls
# DESIGN: "a CLI lookup in between says clearly that the daemon is gone".
# The stale segment still holds st1 -> a dead pid; it must not be printed
# as if it were live.
t_exit 5 "lookup after the daemon was killed exits 5 (daemon gone)" kv lookup st1
t_check "lookup after the daemon was killed says the daemon is gone" grep_q '^keyvisor: .*daemon' "$T_ERR"
t_check "lookup after the daemon was killed does not print the dead pid" test "$T_OUT" != "$ST1"
t_exit 5 "count after the daemon was killed exits 5 (no live names)" kv count

LOGN=$(wc -l <"$T_DIR/daemon.log")
kv_daemon_start
t_check "a new daemon starts over the stale socket" kv_daemon_ready 5
NEWLOG=$(tail -n +"$((LOGN + 1))" "$T_DIR/daemon.log")
t_check "the new daemon says it removed the stale socket" grep_q 'removed the stale socket' "$NEWLOG"
t_check "the new daemon says it removed the stale registry" grep_q 'removed the stale registry' "$NEWLOG"
t_exit 0 "the new daemon's ls exits 0" kt ls
t_eq 1 "$(printf '%s\n' "$T_OUT" | wc -l)" "the new daemon starts clean (ls shows only the header)"
t_exit 1 "the new daemon starts clean (lookup st1 exits 1)" kv lookup st1
t_exit 0 "the new daemon starts clean (count)" kv count
t_eq 0 "$T_OUT" "the new registry is empty"
t_exit 0 "the new daemon starts st1 again" kt start st1 -- "$W"
NST1=$T_OUT
t_eq "$NST1" "$(kv lookup st1)" "the new daemon registers st1"
t_exit 0 "the new daemon stops st1" kt stop st1
t_check "st1's worker is gone" dead "$NST1"
kt start last -- "$W" >/dev/null

# ---------------------------------------------------------------------------
# 11. The end: the daemon exits 0 (a sanitizer report would change that).
# ---------------------------------------------------------------------------
kv_daemon_stop
t_eq 0 "$DAEMON_STATUS" "the daemon exits 0 on SIGTERM (no sanitizer report)"
t_check "no sanitizer report in the daemon's log" kv_daemon_log_clean
t_done
