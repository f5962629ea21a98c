#!/bin/sh
# test_kinds: keyvisor.conf(5) kinds against the real keyvisord (-c FILE),
# the real CLI and real processes: every key of a kind section, the worker
# channel (readiness, heartbeats, activity, values, status text) through
# libkeyvisor's kv-worker and the plain-sh example, publish = ready, the
# errors of a bad file, and reloading (keyvisor reload and SIGHUP).
#
# Slow things (idle lifetimes, watchdogs) are started early and judged
# later, so that their waiting overlaps the rest.  Runs in 15 to 30 s.
. "$KV_SRC/tests/integration/lib.sh"

LOG="$T_DIR/daemon.log"
EV="$T_DIR/events"
CONF="$T_DIR/keyvisor.conf"
SH_WORKER="$KV_SRC/worker/examples/sh-worker.sh"
PY=python3
BG="" # pids of our own background jobs
SLEEP=$(command -v sleep)
IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# ---- helpers --------------------------------------------------------------

my_cleanup() {
	for _p in $BG; do kill "$_p" 2>/dev/null; done
	t_cleanup
}
trap my_cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
between() {
	awk -v l="$1" -v x="$2" -v h="$3" 'BEGIN { exit !(l <= x && x <= h) }'
}
# Sleep until SECONDS after the time T0.
sleep_until() { # T0 SECONDS
	_s=$(awk -v a="$1" -v s="$2" -v b="$(now)" \
	    'BEGIN { d = a + s - b; if (d < 0) d = 0; printf "%.3f", d }')
	sleep "$_s"
}
lk() { kv lookup "$1" 2>/dev/null; }
gone() { [ ! -e "/proc/$1" ]; }
field() { kv status "$1" 2>/dev/null | sed -n "s/^$2: //p"; }
state_is() { [ "$(field "$1" state)" = "$2" ]; }
forgotten() {
	kv status "$1" >/dev/null 2>&1
	[ $? -eq 1 ]
}
supervised_pid() { # KEY: the pid status shows, if there is one
	_p=$(field "$1" pid)
	is_pid "$_p" && echo "$_p"
}
has_pid() { supervised_pid "$1" >/dev/null; }
changed() { _p=$(lk "$1") && [ -n "$_p" ] && [ "$_p" != "$2" ]; }
starts() { grep -c "^keyvisord: $1: started pid" "$LOG"; }
starts_ge() { [ "$(starts "$1")" -ge "$2" ]; }
# The pid of the last "KEY: started pid" line of the log.
started_pid() {
	sed -n "s/^keyvisord: $1: started pid \([0-9]*\) .*/\1/p" "$LOG" |
	    tail -n 1
}
nevents() { # EVENT KEY
	grep "\"event\":\"$1\"" "$EV" | grep -c "\"key\":\"$2\""
}
ev_ge() { [ "$(nevents "$1" "$2")" -ge "$3" ]; }
nreloaded() { grep -c '"event":"reloaded"' "$EV"; }
reloaded_ge() { [ "$(nreloaded)" -ge "$1" ]; }
# The values of FIELD in the events EVENT of KEY, one a line.
ev_field() { # EVENT KEY FIELD
	$PY - "$@" "$EV" <<'EOF'
import json, sys
event, key, field, path = sys.argv[1:]
for line in open(path):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == event and e.get("key") == key:
        print(e.get(field))
EOF
}
# The "restarting" delays of KEY seen by the watcher.
ev_delays() {
	$PY - "$1" "$EV" <<'EOF'
import json, sys
key, path = sys.argv[1:]
out = []
for line in open(path):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "restarting" and e.get("key") == key:
        out.append("%.3f" % e["delay"])
print(" ".join(out))
EOF
}
# A field of /proc/PID/status, tabs made spaces.
proc_status() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" | tr '\t' ' '; }
# The soft and hard limits of /proc/PID/limits for the row named NAME.
proc_limit() {
	awk -v n="$2" 'index($0, n) == 1 {
	    s = substr($0, length(n) + 1); split(s, f, " ");
	    print f[1], f[2] }' "/proc/$1/limits"
}
# The arguments of PID, one per line.
proc_args() { tr '\0' '\n' <"/proc/$1/cmdline"; }
# How many entries NAME=... the initial environment of PID has.
env_count() { tr '\0' '\n' <"/proc/$1/environ" | grep -c "^$2="; }
with_env() {
	grep -l -s -z -x "$1" /proc/[0-9]*/environ 2>/dev/null |
	    sed 's|/proc/\([0-9]*\)/environ|\1|' | sort -n
}
kind_names() { kv kinds --json | kv_json '" ".join(k["name"] for k in j)'; }
has_kind() { kind_names | tr ' ' '\n' | grep -qx "$1"; }
daemon_exited() { ! alive "$DPID"; }
log_count() { grep -c -- "$1" "$LOG"; }
log_count_ge() { [ "$(log_count "$1")" -ge "$2" ]; }
job_done() { ! kill -0 "$1" 2>/dev/null; }
# Check that OUT (a t_exit's stderr, say) contains TEXT.
t_has() { # TEXT OUT DESCRIPTION
	case $2 in
	*"$1"*) t_ok "$3" ;;
	*) t_fail "$3" "wanted '$1' in: $2" ;;
	esac
}

# ---- the workers' helper scripts and the configuration --------------------

mkdir -p "$T_DIR/wd"
# sigrec.sh KEY [VERSION]: records the signal that stops it in sig.KEY,
# and says it is up (traps set) in up.KEY.
cat >"$T_DIR/sigrec.sh" <<EOF
f="$T_DIR/sig.\$1"
trap 'echo USR1 >"\$f"; exit 0' USR1
trap 'echo TERM >"\$f"; exit 0' TERM
trap 'echo INT >"\$f"; exit 0' INT
trap 'echo HUP >"\$f"; exit 0' HUP
echo "\${2:-}" >"$T_DIR/up.\$1"
while :; do
	$SLEEP 0.1 &
	wait \$!
done
EOF
# msg.sh: a worker in sh that says STATUS, two bad messages, a value that
# is not text, then READY.
# dash redirects only fds 0 to 9: above, it runs itself again with bash,
# as worker/examples/sh-worker.sh does.
cat >"$T_DIR/msg.sh" <<EOF
fd=\$KEYVISOR_NOTIFY_FD
if [ "\$fd" -gt 9 ] && [ -z "\${BASH_VERSION:-}" ]; then
	exec bash "\$0" "\$@"
fi
printf 'STATUS caf\303\251 ok\n' >&\$fd
printf 'BOGUS\n' >&\$fd
printf 'READY extra\n' >&\$fd
printf 'VALUE 00fF\n' >&\$fd
printf 'READY\n' >&\$fd
exec $SLEEP 300
EOF

QUOTE_LINE="command = /bin/sh -c '$SLEEP 300 & wait' sh \"two words\" '\$HOME *' \
a\\ b \"q\\\"d\" --key=%k %k \"100%%\" x\"y z\"'w' #hash"

# The parts of the file the versions share, in $T_DIR/base.conf.
cat >"$T_DIR/base.conf" <<EOF
# keyvisor.conf for test_kinds
[keyvisord]
instance = $KV_INSTANCE
registry = $KV_INSTANCE
log_level = info
restart_rate = 0

[kind plain]
command = $KV_WORKER

[kind quote]
$QUOTE_LINE

[kind crashy]
command = $KV_WORKER --exit-after 0 --code 1
max_restarts = 2
max_seconds = 5

[kind trans]
command = $KV_WORKER --exit-after 0.2
restart = transient

[kind temp]
command = $KV_WORKER --exit-after 0.2 --code 1
restart = temporary

[kind backoff]
command = $KV_WORKER --exit-after 0 --code 1
restart_delay = 0.1
backoff_max = 0.4
max_restarts = 100
max_seconds = 60

[kind sig]
command = /bin/sh $T_DIR/sigrec.sh %k
stop_signal = SIGUSR1

[kind signum]
command = /bin/sh $T_DIR/sigrec.sh %k
stop_signal = 1  ; SIGHUP

[kind stubborn]
command = $KV_WORKER --ignore-term
stop_timeout = 0.5

[kind capped]
command = $KV_WORKER
max_children = 2

[kind nob]
command = $KV_WORKER
user = nobody

[kind nobgrp]
command = $KV_WORKER
user = 65534
group = 1

[kind place]
command = $KV_WORKER
directory = $T_DIR/wd
environment = KV_A=1 KV_B="two words"
environment = KV_OVR=kind
umask = 027
limit_nofile = 123:456
limit_core = 0
limit_fsize = 1048576
limit_cpu = infinity

[kind idle]
command = $KV_WORKER
ttl = 1

[kind wd]
command = $KV_WORKER
watchdog = 1
max_restarts = 10
max_seconds = 5

[kind rd]
command = $KV_WORKER --ready-after 0.8
ready = fd
ready_timeout = 1.5

[kind pub]
command = $KV_WORKER --ready-after 1.5
ready = fd
publish = ready

[kind shw]
command = /bin/sh $SH_WORKER "hello from sh"

[kind nocmd]
restart = temporary
EOF

# Version 1: chg at v1 and doomed (dropped by version 2).
DOOMED_USER=""
[ $IS_ROOT -eq 1 ] && DOOMED_USER="user = nobody"
{
	cat "$T_DIR/base.conf"
	cat <<EOF

[kind chg]
command = /bin/sh $T_DIR/sigrec.sh %k v1
environment = CHG=v1

[kind doomed]
command = $KV_WORKER --stdout-line doomed-v1
environment = DOOMED=yes
umask = 077
$DOOMED_USER
EOF
} >"$T_DIR/v1.conf"
# Version 2: chg changed, doomed gone, added new; capacity differs.
{
	sed 's/^restart_rate = 0$/restart_rate = 0\ncapacity = 1000/' \
	    "$T_DIR/base.conf"
	cat <<EOF

[kind chg]
command = /bin/sh $T_DIR/sigrec.sh %k v2
environment = CHG=v2
stop_signal = HUP

[kind added]
command = $KV_WORKER --stdout-line added
EOF
} >"$T_DIR/v2.conf"
# Version 3: version 2 and a kind for the SIGHUP reload.
{
	cat "$T_DIR/v2.conf"
	printf '\n[kind hupk]\ncommand = %s\n' "$KV_WORKER"
} >"$T_DIR/v3.conf"
# A bad file: version 2 with a bad restart in kind added.
cp "$T_DIR/v2.conf" "$T_DIR/bad.conf"
echo "restart = sometimes" >>"$T_DIR/bad.conf"
BAD_LINE=$(wc -l <"$T_DIR/bad.conf" | tr -d ' ')

cp "$T_DIR/v1.conf" "$CONF"
export KV_OVR=daemon # a variable of the daemon that kind place overrides

# ---- a bad file at start-up ------------------------------------------------

# In a directory of its own, with an instance of its own: nothing of the
# test's daemon is touched.
bad_start() { # FILE: run keyvisord -c FILE
	mkdir -p "$T_DIR/badd"
	KEYVISOR_SOCKET="$T_DIR/badd/kv.sock" KEYVISOR_INSTANCE="bad$$" \
	    timeout 10 "$KEYVISORD" -c "$1"
}
t_exit 2 "keyvisord -c with a bad file exits 2" bad_start "$T_DIR/bad.conf"
cat "$T_DIR/stderr" >>"$T_DIR/badstart.err"
t_has "keyvisord: $T_DIR/bad.conf:$BAD_LINE: [kind added]: restart:" \
    "$T_ERR" "the error names FILE:LINE, the section and the key"
t_has 'got "sometimes"' "$T_ERR" "the error says what is wrong: $T_ERR"
t_check "no socket is left by the refused start" \
    test ! -e "$T_DIR/badd/kv.sock"
t_check "no registry segment is left by the refused start" \
    test ! -e "/dev/shm/keyvisor.bad$$"
printf '[kind x]\ncommand = /bin/true\ncolour = red\n' >"$T_DIR/bad2.conf"
t_exit 2 "an unknown key is an error at start-up" bad_start "$T_DIR/bad2.conf"
cat "$T_DIR/stderr" >>"$T_DIR/badstart.err"
t_has "$T_DIR/bad2.conf:3:" "$T_ERR" "... named by FILE:LINE: $T_ERR"
t_exit 2 "a file that does not exist is an error at start-up" \
    bad_start "$T_DIR/nonexistent.conf"
t_has "nonexistent.conf" "$T_ERR" "... named in the message: $T_ERR"
cat "$T_DIR/stderr" >>"$T_DIR/badstart.err"
t_check "no sanitizer report from the refused starts" sh -c \
    '! grep -E "Sanitizer|runtime error" "$1"' - "$T_DIR/badstart.err"

# ---- the daemon ----------------------------------------------------------

T_START=$(now)
kv_daemon_start -c "$CONF"
kv watch >"$EV" 2>"$T_DIR/watch.err" &
WPID=$!
BG="$BG $WPID"
sleep 0.3
kv start hello -- "$KV_WORKER" >/dev/null
if ! t_until 3 ev_ge started hello 1; then
	echo "Bail out! keyvisor watch sees no events:" \
	    "$(cat "$T_DIR/watch.err")"
	exit 1
fi
kv stop hello >/dev/null

# ---- slow checks, started first ------------------------------------------

# ttl = 1: one worker idle, one touching itself (kv_touch), one touched by
# keyvisor touch.
t_exit 0 "start idle2 (kind idle, kv-worker --touch 0.3)" \
    kv start --kind idle idle2 -- "$KV_WORKER" --touch 0.3
idle2=$T_OUT
t_exit 0 "start idle3 (kind idle, touched by keyvisor touch)" \
    kv start --kind idle idle3
idle3=$T_OUT
# It touches idle3 every 0.25 s while $T_DIR/touching exists.
: >"$T_DIR/touching"
(
	while [ -e "$T_DIR/touching" ]; do
		"$KEYVISOR" touch idle3 >/dev/null 2>&1 || echo "touch failed" \
		    >>"$T_DIR/touch.err"
		sleep 0.25
	done
) &
TOUCHER=$!
BG="$BG $TOUCHER"
# watchdog = 1: one worker without heartbeats, one with.
t_exit 0 "start wd1 (kind wd, watchdog 1, no heartbeat)" kv start --kind wd wd1
wd1=$T_OUT
t_exit 0 "start wd2 (kind wd, kv-worker --heartbeat 0.3)" \
    kv start --kind wd wd2 -- "$KV_WORKER" --heartbeat 0.3
wd2=$T_OUT
t_exit 0 "start wd3 (kind wd, --restart temporary, no heartbeat)" \
    kv start --kind wd wd3 --restart temporary
wd3=$T_OUT
wdl=$(kv status wd2 --json | kv_json 'j.get("watchdog_left")')
t_check "status --json: 0 < watchdog_left ($wdl) <= 1" between 0.001 "$wdl" 1

# idle1 last, so that nothing slow comes between its start and the check
# that it is still there after 0.6 s.
IDLE_T0=$(now)
t_exit 0 "start idle1 (kind idle, ttl 1, no activity)" kv start --kind idle idle1
idle1=$T_OUT
ttl=$(kv status idle1 --json | kv_json 'j.get("ttl_left")')
t_check "status --json: 0 < ttl_left ($ttl) <= 1" between 0.001 "$ttl" 1
t_check "status shows 'ttl left:'" sh -c \
    '"$1" status idle1 | grep -q "^ttl left: "' - "$KEYVISOR"
sleep_until "$IDLE_T0" 0.6
dt=$(elapsed "$IDLE_T0" "$(now)")
if ! between 0 "$dt" 0.9; then
	t_skip "idle1 still runs 0.6s after its start" "checked late, at ${dt}s"
elif alive "$idle1"; then
	t_ok "idle1 still runs ${dt}s after its start"
else
	t_fail "idle1 still runs ${dt}s after its start" "already gone"
fi

# ---- command: splitting, quoting, %k ----------------------------------------

QKEY="q'\"\$x*%k%%"
t_exit 0 "start --kind quote with a key full of quotes, \$, * and %k" \
    kv start --kind quote "$QKEY"
qp=$T_OUT
printf '%s\n' /bin/sh -c "$SLEEP 300 & wait" sh "two words" '$HOME *' \
    'a b' 'q"d' "--key=$QKEY" "$QKEY" '100%' 'xy zw' '#hash' \
    >"$T_DIR/args.want"
is_pid "$qp" && proc_args "$qp" >"$T_DIR/args.got"
if cmp -s "$T_DIR/args.want" "$T_DIR/args.got"; then
	t_ok "the command is split as sh would, %k and %% replaced, once"
else
	t_fail "the command is split as sh would, %k and %% replaced, once" \
	    "$(diff "$T_DIR/args.want" "$T_DIR/args.got")"
fi
t_eq "$QKEY" "$(kv_environ "$qp" KEYVISOR_KEY)" "KEYVISOR_KEY is the key"
t_eq quote "$(kv lookup "$QKEY" --json | kv_json 'j["kind"]')" \
    "the registry entry carries the kind"
t_eq quote "$(field "$QKEY" kind)" "status shows kind: quote"
t_exit 0 "stop the quote worker" kv stop "$QKEY"

# The command line's command replaces the kind's, for that key only.
t_exit 0 "start --kind plain own -- CMD" \
    kv start --kind plain own -- "$KV_WORKER" --stdout-line own-cmd
t_check "the command after -- is the one run" sh -c \
    'tr "\0" "\n" </proc/$1/cmdline | grep -qx own-cmd' - "$T_OUT"
t_exit 0 "stop own" kv stop own

# ---- restart, max_restarts, max_seconds ------------------------------------

t_exit 0 "start --kind crashy (exits 1, max_restarts 2)" \
    kv start --kind crashy cr1
t_check "crashy ends failed" t_until 4 state_is cr1 failed
sleep 0.2
t_eq 3 "$(starts cr1)" "max_restarts 2: runs 1 + 2 times"
t_has "exceeded 2 restarts in 5s" "$(field cr1 reason)" \
    "the reason names max_restarts and max_seconds of the kind"
t_exit 0 "stop cr1" kv stop cr1

t_exit 0 "start --kind trans (transient, exits 0)" kv start --kind trans tr1
t_exit 0 "start --kind temp (temporary, exits 1)" kv start --kind temp tp1
t_check "transient exit 0: forgotten" t_until 3 forgotten tr1
t_check "temporary exit 1: forgotten" t_until 3 forgotten tp1
t_eq "1 1" "$(starts tr1) $(starts tp1)" \
    "transient exit 0 and temporary are not restarted"
t_eq "permanent" "$(kv kinds --json |
    kv_json '[k for k in j if k["name"] == "plain"][0]["restart"]')" \
    "restart defaults to permanent"
t_eq "transient temporary" "$(kv kinds --json | kv_json '" ".join(
    k["restart"] for k in j if k["name"] in ("trans", "temp"))')" \
    "kinds shows restart = transient and temporary"

# ---- restart_delay, backoff_max ---------------------------------------------

t_exit 0 "start --kind backoff (restart_delay 0.1, backoff_max 0.4)" \
    kv start --kind backoff bo1
t_check "4 restarting events for bo1" t_until 4 ev_ge restarting bo1 4
delays=$(ev_delays bo1)
echo "# bo1 restarting delays: $delays"
ok=1 i=1
for w in 0.1 0.2 0.4 0.4; do
	d=$(echo "$delays" | cut -d' ' -f$i)
	between "$(awk -v w="$w" 'BEGIN { print w - 0.01 }')" "${d:-x}" "$w" ||
	    ok=0
	i=$((i + 1))
done
if [ $ok -eq 1 ]; then
	t_ok "the kind's delays: 0.1 0.2 0.4 0.4"
else
	t_fail "the kind's delays: 0.1 0.2 0.4 0.4" "got: $delays"
fi
t_exit 0 "stop bo1" kv stop bo1

# ---- stop_signal, stop_timeout ----------------------------------------------

t_exit 0 "start --kind sig (stop_signal = SIGUSR1)" kv start --kind sig sg1
t_until 3 test -e "$T_DIR/up.sg1"
t_exit 0 "start --kind signum (stop_signal = 1)" kv start --kind signum sg2
t_until 3 test -e "$T_DIR/up.sg2"
t_exit 0 "stop sg1" kv stop sg1
t_eq USR1 "$(cat "$T_DIR/sig.sg1" 2>/dev/null)" "stop sent SIGUSR1 to sg1"
t_exit 0 "stop sg2" kv stop sg2
t_eq HUP "$(cat "$T_DIR/sig.sg2" 2>/dev/null)" "stop sent signal 1 (HUP) to sg2"

t_exit 0 "start --kind stubborn (ignores TERM, stop_timeout 0.5)" \
    kv start --kind stubborn st1
sp=$T_OUT
sleep 0.2
t0=$(now)
t_exit 0 "stop st1" kv stop st1
dt=$(elapsed "$t0" "$(now)")
t_check "stop took the kind's stop_timeout, 0.5s (took ${dt}s)" \
    between 0.45 "$dt" 2.5
t_check "st1 was killed with SIGKILL" \
    grep -q "^keyvisord: st1: pid $sp killed by SIGKILL" "$LOG"

# ---- max_children ----------------------------------------------------------

t_exit 0 "start capped 1 of 2" kv start --kind capped cap1
t_exit 0 "start capped 2 of 2" kv start --kind capped cap2
t_exit 4 "a third worker of kind capped is refused (exit 4)" \
    kv start --kind capped cap3
t_has "capped" "$T_ERR" "the refusal names the kind: $T_ERR"
t_exit 1 "the refused key is not supervised" kv status cap3
t_exit 0 "another kind is not limited by capped's max_children" \
    kv start --kind plain cap4
t_eq 2 "$(kv kinds --json |
    kv_json '[k for k in j if k["name"] == "capped"][0]["running"]')" \
    "kinds --json: capped running 2"
t_exit 0 "stop cap1" kv stop cap1
t_exit 0 "with one stopped, a start of kind capped works again" \
    kv start --kind capped cap3
for k in cap2 cap3 cap4; do kv stop $k >/dev/null; done

# ---- user and group ----------------------------------------------------------

if [ $IS_ROOT -eq 1 ]; then
	nuid=$(id -u nobody) ngid=$(id -g nobody)
	t_exit 0 "start --kind nob (user = nobody)" kv start --kind nob nob1
	np=$T_OUT
	t_eq "$nuid $nuid $nuid $nuid" "$(proc_status "$np" Uid)" \
	    "nob1 runs as nobody: Uid $nuid (real, effective, saved, fs)"
	t_eq "$ngid $ngid $ngid $ngid" "$(proc_status "$np" Gid)" \
	    "nob1's group is nobody's primary group, $ngid"
	want=$(id -G nobody | tr ' ' '\n' | sort -n | tr '\n' ' ')
	got=$(proc_status "$np" Groups | tr ' ' '\n' | sed '/^$/d' |
	    sort -n | tr '\n' ' ')
	t_eq "$want" "$got" "nob1's supplementary groups are nobody's"
	t_exit 0 "start --kind nobgrp (user = 65534, group = 1)" \
	    kv start --kind nobgrp nob2
	t_eq "1 1 1 1" "$(proc_status "$T_OUT" Gid)" "nob2's group is 1"
	t_eq "$nuid $nuid $nuid $nuid" "$(proc_status "$T_OUT" Uid)" \
	    "nob2 runs as uid 65534"
	t_eq nobody "$(kv kinds --json |
	    kv_json '[k for k in j if k["name"] == "nob"][0]["user"]')" \
	    "kinds --json: user nobody"
	kv stop nob1 >/dev/null
	kv stop nob2 >/dev/null
else
	for d in "user = nobody" "group = 1" "supplementary groups" \
	    "kinds user"; do
		t_skip "$d" "not root"
	done
fi

# ---- directory, environment, umask, limits -----------------------------------

t_exit 0 "start --kind place" kv start --kind place pl1
pp=$T_OUT
t_eq "$T_DIR/wd" "$(readlink "/proc/$pp/cwd")" "directory: the worker's cwd"
t_eq 1 "$(kv_environ "$pp" KV_A)" "environment: KV_A=1"
t_eq "two words" "$(kv_environ "$pp" KV_B)" "environment: KV_B=\"two words\""
t_eq kind "$(kv_environ "$pp" KV_OVR)" \
    "environment overrides the daemon's KV_OVR"
t_eq 1 "$(env_count "$pp" KV_OVR)" "... which is there once"
t_exit 0 "start --kind plain (no environment of its own)" \
    kv start --kind plain pl2
t_eq daemon "$(kv_environ "$T_OUT" KV_OVR)" \
    "a worker of another kind has the daemon's KV_OVR"
t_eq 0027 "$(proc_status "$pp" Umask)" "umask = 027"
t_eq "123 456" "$(proc_limit "$pp" "Max open files")" "limit_nofile = 123:456"
t_eq "0 0" "$(proc_limit "$pp" "Max core file size")" "limit_core = 0"
t_eq "1048576 1048576" "$(proc_limit "$pp" "Max file size")" \
    "limit_fsize = 1048576"
t_eq "unlimited unlimited" "$(proc_limit "$pp" "Max cpu time")" \
    "limit_cpu = infinity"
kv stop pl1 >/dev/null
kv stop pl2 >/dev/null

# ---- ttl: judged -------------------------------------------------------------

t_check "idle1 is stopped and forgotten after its ttl" t_until 3 forgotten idle1
t_check "idle1's process is gone" t_until 2 gone "$idle1"
t_check "an idle event for idle1" t_until 1 ev_ge idle idle1 1
t_eq 1 "$(starts idle1)" "idle1 is not restarted: an idle stop is a stop"
t_check "idle2 (kv_touch every 0.3s) still runs" alive "$idle2"
t_eq "$idle2" "$(lk idle2)" "idle2 keeps its pid"
t_check "idle3 (keyvisor touch every 0.25s) still runs" alive "$idle3"
t_eq "0 0" "$(nevents idle idle2) $(nevents idle idle3)" \
    "no idle event for idle2 nor idle3"
rm -f "$T_DIR/touching"
wait "$TOUCHER"
BG=$(echo "$BG" | sed "s/ $TOUCHER//")
t_check "keyvisor touch exited 0 each time" test ! -e "$T_DIR/touch.err"
t_check "once the touches stop, idle3 is stopped by its ttl" \
    t_until 3 forgotten idle3
t_exit 1 "keyvisor touch of an unknown key exits 1" kv touch nosuchkey
t_exit 0 "stop idle2" kv stop idle2

# ---- watchdog: judged ---------------------------------------------------------

t_check "a watchdog event for wd1" t_until 3 ev_ge watchdog wd1 1
t_eq "$wd1" "$(ev_field watchdog wd1 pid | sed -n 1p)" \
    "the watchdog event names wd1's first pid"
t_check "wd1 is restarted under a new pid" t_until 3 changed wd1 "$wd1"
t_check "wd1's first process is gone" gone "$wd1"
t_has SIGKILL "$(field wd1 'last exit')" "wd1's last exit: SIGKILL"
t_check "wd2 (--heartbeat 0.3) still runs" alive "$wd2"
t_eq "$wd2" "$(lk wd2)" "wd2 keeps its pid"
t_eq 0 "$(nevents watchdog wd2)" "no watchdog event for wd2"
t_check "wd3 (temporary) is killed by its watchdog and forgotten" \
    t_until 3 forgotten wd3
t_eq "$wd3" "$(ev_field watchdog wd3 pid | sed -n 1p)" \
    "a watchdog event for wd3's pid"
t_eq 1 "$(starts wd3)" "wd3 is not restarted: its policy is temporary"
t_exit 0 "stop wd1" kv stop wd1
t_exit 0 "stop wd2" kv stop wd2

# ---- ready = fd, --wait-ready -------------------------------------------------

t0=$(now)
t_exit 0 "start --kind rd --wait-ready (READY after 0.8s)" \
    kv start --kind rd rd1 --wait-ready
dt=$(elapsed "$t0" "$(now)")
rp=$T_OUT
t_check "start --wait-ready returned once READY came (took ${dt}s)" \
    between 0.75 "$dt" 2.5
t_check "it printed the pid ($rp)" is_pid "$rp"
t_eq ready "$(field rd1 state)" "rd1's state is ready"
t_eq "$rp" "$(lk rd1)" "lookup rd1 gives that pid"
t_exit 0 "stop rd1" kv stop rd1

# keyvisor(1), --wait-ready: "A kind with ready = fd always waits like this."
t0=$(now)
t_exit 0 "start --kind rd without --wait-ready" kv start --kind rd rd2
dt=$(elapsed "$t0" "$(now)")
if between 0.75 "$dt" 2.5; then
	t_ok "a kind with ready = fd waits for READY anyway (took ${dt}s)"
else
	t_fail "a kind with ready = fd waits for READY anyway" "took ${dt}s"
fi
t_eq ready "$(field rd2 state)" "rd2 is ready when start returns"
t_exit 0 "stop rd2" kv stop rd2

t0=$(now)
t_exit 7 "a worker never ready: start --wait-ready exits 7" \
    kv start --kind rd rd3 --wait-ready -- "$KV_WORKER"
dt=$(elapsed "$t0" "$(now)")
t_has "not ready within" "$T_ERR" "the error says so: $T_ERR"
t_check "after the kind's ready_timeout, 1.5s (took ${dt}s)" \
    between 1.45 "$dt" 3
r3=$(started_pid rd3)
t_check "rd3's worker ($r3) is stopped: its pid is gone" \
    t_until 3 gone "${r3:-0}"
t_check "rd3 is forgotten" t_until 2 forgotten rd3
t_exit 1 "lookup rd3 exits 1" kv lookup rd3

t0=$(now)
t_exit 7 "start --wait-ready --ready-timeout 0.5 (no kind) exits 7" \
    kv start rd5 --wait-ready --ready-timeout 0.5 -- "$KV_WORKER"
dt=$(elapsed "$t0" "$(now)")
t_check "after --ready-timeout 0.5 (took ${dt}s)" between 0.45 "$dt" 2
t_check "rd5 is forgotten" t_until 2 forgotten rd5

t_exit 1 "a worker that exits before READY: start --wait-ready exits 1" \
    kv start --kind rd rd4 --wait-ready -- "$KV_WORKER" --exit-after 0.3 \
    --code 1
t_has "exited before it was ready" "$T_ERR" "the error says so: $T_ERR"
t_check "rd4 is forgotten" t_until 2 forgotten rd4
t_eq 1 "$(starts rd4)" "rd4 was not restarted"

# ---- publish = ready -----------------------------------------------------------

kv start --kind pub pub1 >"$T_DIR/pub1.out" 2>"$T_DIR/pub1.err" &
PUBJ=$!
BG="$BG $PUBJ"
PUB_T0=$(now)
t_check "pub1 is supervised" t_until 1 has_pid pub1
pub=$(supervised_pid pub1)
t_exit 1 "before READY, lookup pub1 exits 1" kv lookup pub1
t_has "not found" "$T_ERR" "... saying not found: $T_ERR"
t_eq 0 "$(kv count pub1)" "before READY, count pub1 is 0"
t_check "before READY, status says published: no" sh -c \
    '"$1" status pub1 | grep -qx "published: no"' - "$KEYVISOR"
t_exit 3 "before READY, a second start of pub1 is refused (exit 3)" \
    kv start pub1 -- "$KV_WORKER"
t_exit 3 "... and one by another kind too" kv start --kind plain pub1
t0=$(now)
t_exit 0 "before READY, ensure pub1 answers" kv ensure --kind pub pub1
t_eq "$pub" "$T_OUT" "... with the worker's pid"
dt=$(elapsed "$t0" "$(now)")
# keyvisor(1): "That answer comes at once, even with --wait-ready."
if ! lk pub1 >/dev/null; then
	t_ok "... at once, before READY (took ${dt}s)"
else
	t_fail "... at once, before READY" "took ${dt}s; pub1 was ready by then"
fi
t_check "after READY lookup pub1 finds it" t_until 3 lk pub1
echo "# pub1 found by lookup $(elapsed "$PUB_T0" "$(now)")s after its start"
t_eq "$pub" "$(lk pub1)" "lookup pub1 gives the worker's pid ($pub)"
t_eq true "$(kv status pub1 --json | kv_json 'j.get("published", True)')" \
    "status --json: published"
t_check "the background start of pub1 ends" t_until 3 job_done "$PUBJ"
wait "$PUBJ"
t_eq 0 "$?" "the background start of pub1 exited 0"
BG=$(echo "$BG" | sed "s/ $PUBJ//")
t_eq "$pub" "$(cat "$T_DIR/pub1.out")" "and printed the pid"
t_exit 0 "stop pub1" kv stop pub1

# ---- values, status text, bad messages ------------------------------------------

t_exit 0 "start val (kv-worker --value 'hello world')" \
    kv start val -- "$KV_WORKER" --value "hello world"
valp=$T_OUT
val_seen() { kv lookup val --json 2>/dev/null | grep -q '"value"'; }
t_check "the value reaches the registry" t_until 2 val_seen
t_eq "hello world" "$(kv lookup val --json | kv_json 'j["value"]')" \
    "lookup --json (another process) shows the value"
t_eq "hello world" "$(kv status val --json | kv_json 'j.get("value")')" \
    "status --json shows the value"
t_eq "hello world" "$(field val value)" "status shows value: hello world"

t_exit 0 "start msg (an sh worker: STATUS, two bad messages, READY)" \
    kv start msg -- /bin/sh "$T_DIR/msg.sh"
msgp=$T_OUT
# channel.md: "From a shell: printf 'READY\n' >&3"; sh-worker.sh: "keyvisord's
# channel is on 3".  A POSIX sh (dash) can only redirect to fds 0..9.
nfd=$(kv_environ "$msgp" KEYVISOR_NOTIFY_FD)
case $nfd in
[3-9]) t_ok "KEYVISOR_NOTIFY_FD is $nfd: a POSIX sh can write to it" ;;
*) t_fail "KEYVISOR_NOTIFY_FD is a fd a POSIX sh can write to (3..9)" \
    "KEYVISOR_NOTIFY_FD=$nfd: dash says \"Bad fd number\" for >&$nfd" ;;
esac
t_check "msg becomes ready after its bad messages" t_until 2 state_is msg ready
t_eq "café ok" "$(field msg message)" "status shows message: café ok"
t_eq "café ok" "$(kv status msg --json | kv_json 'j.get("message")')" \
    "status --json shows the message"
t_eq 1 "$(log_count '^keyvisord: msg: bad message on the worker channel')" \
    "the bad messages are logged once"
t_eq AP8= "$(kv lookup msg --json | kv_json 'j.get("value_base64")')" \
    "a value that is not UTF-8: lookup --json shows value_base64"
t_eq 0x00ff "$(field msg value)" "... and status shows value: 0x00ff"
t_exit 0 "stop msg" kv stop msg

# kv_lookup() from a worker.
t_exit 0 "start looker (kv-worker --lookup val)" \
    kv start looker --restart temporary -- "$KV_WORKER" --lookup val \
    --exit-after 0.1
t_check "the worker's kv_lookup found val's pid $valp" \
    t_until 2 grep -q "^lookup val pid $valp\$" "$LOG"
t_exit 0 "start looker2 (kv-worker --lookup nosuch)" \
    kv start looker2 --restart temporary -- "$KV_WORKER" --lookup nosuch \
    --exit-after 0.1
t_check "its kv_lookup of a missing key fails (stderr)" \
    t_until 2 grep -q "lookup nosuch: " "$LOG"
t_exit 0 "stop val" kv stop val

# The plain sh example.
t_exit 0 "start --kind shw (worker/examples/sh-worker.sh)" \
    kv start --kind shw sh1
t_check "sh-worker's READY: state ready" t_until 3 state_is sh1 ready
t_eq "hello from sh" "$(kv lookup sh1 --json | kv_json 'j.get("value")')" \
    "sh-worker's VALUE: lookup --json shows it"
t_exit 0 "stop sh1" kv stop sh1

# ---- wait --ready ----------------------------------------------------------------

kv wait wr --ready --timeout 10 >"$T_DIR/wr.out" 2>"$T_DIR/wr.err" &
WJ=$!
BG="$BG $WJ"
sleep 0.3
t_check "wait --ready for a key not yet started is waiting" alive "$WJ"
WR_T0=$(now)
t_exit 0 "start wr (no --wait-ready, READY after 1s)" \
    kv start wr -- "$KV_WORKER" --ready-after 1
wrp=$T_OUT
sleep_until "$WR_T0" 0.6
dt=$(elapsed "$WR_T0" "$(now)")
if ! between 0 "$dt" 0.9; then
	t_skip "0.6s after the start wait --ready still waits" \
	    "checked late, at ${dt}s"
elif kill -0 "$WJ" 2>/dev/null; then
	t_ok "${dt}s after the start wait --ready still waits"
else
	t_fail "0.6s after the start wait --ready still waits" "it answered"
fi
t_check "wait --ready answers once wr is ready" t_until 3 job_done "$WJ"
echo "# wait --ready answered about $(elapsed "$WR_T0" "$(now)")s after start"
wait "$WJ"
t_eq 0 "$?" "wait --ready exits 0"
BG=$(echo "$BG" | sed "s/ $WJ//")
t_eq "$wrp" "$(cat "$T_DIR/wr.out")" "wait --ready prints the pid"
t_eq ready "$(field wr state)" "wr is ready"
t_exit 0 "stop wr" kv stop wr

# ---- kinds ---------------------------------------------------------------------

t_exit 0 "start kp1 of kind plain" kv start --kind plain kp1
t_exit 0 "start kp2 of kind plain" kv start --kind plain kp2
t_exit 0 "keyvisor kinds" kv kinds
t_eq "NAME COMMAND RESTART RUNNING MAX READY PUBLISH" \
    "$(echo "$T_OUT" | head -n 1 | tr -s ' ')" "kinds: the header"
t_eq "rd $KV_WORKER --ready-after 0.8 permanent 0 - fd start" \
    "$(echo "$T_OUT" | awk '$1 == "rd"' | tr -s ' ')" "kinds: the row of rd"
t_eq "capped $KV_WORKER permanent 0 2 none start" \
    "$(echo "$T_OUT" | awk '$1 == "capped"' | tr -s ' ')" \
    "kinds: the row of capped"
want="plain quote crashy trans temp backoff sig signum stubborn capped nob \
nobgrp place idle wd rd pub shw nocmd chg doomed"
t_eq "$want" "$(kind_names)" "kinds --json: every kind, in the file's order"
t_exit 0 "kinds --json" kv kinds --json
t_eq "2 $KV_WORKER 0" "$(echo "$T_OUT" | kv_json '"%d %s %d" % (
    [k for k in j if k["name"] == "plain"][0]["running"],
    " ".join([k for k in j if k["name"] == "plain"][0]["command"]),
    [k for k in j if k["name"] == "plain"][0]["max_children"])')" \
    "kinds --json: plain running 2, its command, max_children 0"
t_eq "fd ready 0" "$(echo "$T_OUT" | kv_json '"%s %s %g" % (
    [k for k in j if k["name"] == "pub"][0]["ready"],
    [k for k in j if k["name"] == "pub"][0]["publish"],
    [k for k in j if k["name"] == "pub"][0]["ttl"])')" \
    "kinds --json: pub ready fd, publish ready, ttl 0"
t_eq "1 1" "$(echo "$T_OUT" | kv_json '"%g %g" % (
    [k for k in j if k["name"] == "idle"][0]["ttl"],
    [k for k in j if k["name"] == "wd"][0]["watchdog"])')" \
    "kinds --json: idle ttl 1, wd watchdog 1"
kv stop kp1 >/dev/null
kv stop kp2 >/dev/null

# ---- errors ----------------------------------------------------------------------

t_exit 2 "start --kind nope exits 2" kv start --kind nope x1
t_has "unknown kind" "$T_ERR" "... unknown kind: $T_ERR"
t_exit 1 "x1 is not supervised" kv status x1
t_exit 2 "start --kind nocmd (a kind without a command) and no CMD exits 2" \
    kv start --kind nocmd x2
t_has "no command" "$T_ERR" "... saying it has no command: $T_ERR"
t_exit 0 "start --kind nocmd with a CMD works" \
    kv start --kind nocmd x3 -- "$KV_WORKER"
t_eq nocmd "$(field x3 kind)" "x3 has kind nocmd"
t_exit 0 "stop x3" kv stop x3

# ---- reload ------------------------------------------------------------------------

t_exit 0 "start chg1 (kind chg, v1)" kv start --kind chg chg1
chg1=$T_OUT
t_until 3 test -e "$T_DIR/up.chg1"
t_exit 0 "start dm1 (kind doomed)" kv start --kind doomed dm1
dm1=$T_OUT
t_exit 0 "start kp3 (kind plain)" kv start --kind plain kp3
kp3=$T_OUT
nre=$(nreloaded)
cp "$T_DIR/v2.conf" "$CONF"
t_exit 0 "keyvisor reload with a good file" kv reload
t_eq "" "$T_OUT" "reload prints nothing"
t_check "kind added is there" has_kind added
t_exit 1 "kind doomed is gone" has_kind doomed
t_check "a reloaded event" t_until 2 reloaded_ge $((nre + 1))
t_eq "$(kind_names | wc -w)" "$(grep '"event":"reloaded"' "$EV" | tail -n 1 |
    kv_json 'j["kinds"]')" "the reloaded event counts the kinds"
t_check "the log says capacity cannot change: ignored" \
    grep -q "reload: .*capacity.*ignored" "$LOG"
t_exit 0 "start --kind added (a new kind) works" kv start --kind added ad1
# The file's instance and registry were those in force, and a reload frees
# the old file's configuration: the names must have outlived it.
t_eq "$KV_INSTANCE $KV_INSTANCE" "$(kv_environ "$T_OUT" KEYVISOR_INSTANCE) \
$(kv_environ "$T_OUT" KEYVISOR_REGISTRY)" \
    "after a reload, workers still get the file's instance and registry"
t_eq "$KV_INSTANCE" "$(kv info --json | kv_json 'j["instance"]')" \
    "after a reload, info shows the instance"
t_check "ad1 runs the new kind's command" sh -c \
    'tr "\0" "\n" </proc/$1/cmdline | grep -qx added' - "$T_OUT"
t_eq "$chg1 $dm1 $kp3" "$(lk chg1) $(lk dm1) $(lk kp3)" \
    "running workers are untouched: same pids"
t_eq v1 "$(kv_environ "$chg1" CHG)" "chg1 still runs as v1 until restarted"
kill -KILL "$chg1"
t_check "chg1 is restarted" t_until 3 changed chg1 "$chg1"
chg1b=$(lk chg1)
t_until 3 grep -qx v2 "$T_DIR/up.chg1"
t_check "the restarted chg1 runs the new command (v2)" sh -c \
    'tr "\0" "\n" </proc/$1/cmdline | grep -qx v2' - "$chg1b"
t_eq v2 "$(kv_environ "$chg1b" CHG)" "... with the new environment"
t_exit 0 "stop chg1" kv stop chg1
t_eq HUP "$(cat "$T_DIR/sig.chg1" 2>/dev/null)" \
    "... and the new stop_signal (HUP): the kind's settings were re-read"
kill -KILL "$dm1"
t_check "dm1 (kind gone) is restarted" t_until 3 changed dm1 "$dm1"
dm1b=$(lk dm1)
t_check "it keeps its last command" sh -c \
    'tr "\0" "\n" </proc/$1/cmdline | grep -qx doomed-v1' - "$dm1b"
t_eq yes "$(kv_environ "$dm1b" DOOMED)" "... its last environment"
t_eq 0077 "$(proc_status "$dm1b" Umask)" "... its last umask"
if [ $IS_ROOT -eq 1 ]; then
	t_eq "$(id -u nobody)" "$(proc_status "$dm1b" Uid | cut -d' ' -f1)" \
	    "... and its last user (nobody)"
else
	t_skip "... and its last user (nobody)" "not root"
fi
t_eq doomed "$(field dm1 kind)" "status still shows kind: doomed"
t_exit 0 "stop dm1" kv stop dm1

# A bad file, with keyvisor reload.
cp "$T_DIR/bad.conf" "$CONF"
nstay=$(log_count "the configuration in force stays")
t_exit 2 "keyvisor reload with a bad file exits 2" kv reload
t_has "keyvisor: $CONF:$BAD_LINE: [kind added]: restart:" "$T_ERR" \
    "it prints FILE:LINE: $T_ERR"
t_check "the daemon logs that the old configuration stays" \
    log_count_ge "the configuration in force stays" $((nstay + 1))
t_check "kind added is still there" has_kind added
t_exit 0 "the old kinds still work: start --kind added" \
    kv start --kind added ad2
t_exit 0 "... and start --kind chg" kv start --kind chg chg2
t_until 3 test -e "$T_DIR/up.chg2"
t_eq v2 "$(kv_environ "$(lk chg2)" CHG)" "... as the last good file says"
t_exit 0 "stop chg2" kv stop chg2
t_eq HUP "$(cat "$T_DIR/sig.chg2" 2>/dev/null)" \
    "a new start of chg uses the new stop_signal (HUP)"

# SIGHUP: a good file, then a bad one.
cp "$T_DIR/v3.conf" "$CONF"
kill -HUP "$DPID"
t_check "SIGHUP with a good file: kind hupk appears" t_until 3 has_kind hupk
t_check "another reloaded event" t_until 2 reloaded_ge $((nre + 2))
t_exit 0 "start --kind hupk" kv start --kind hupk hk1
cp "$T_DIR/bad.conf" "$CONF"
nstay=$(log_count "the configuration in force stays")
kill -HUP "$DPID"
t_check "SIGHUP with a bad file: the daemon logs it keeps the old one" \
    t_until 3 log_count_ge "the configuration in force stays" $((nstay + 1))
t_check "the log names FILE:LINE" \
    grep -q "reload: $CONF:$BAD_LINE: " "$LOG"
t_check "the daemon is still there" alive "$DPID"
t_check "kind hupk is still there" has_kind hupk
for k in ad1 ad2 hk1 kp3; do kv stop $k >/dev/null 2>&1; done

# ---- shutdown ------------------------------------------------------------------------

t_exit 0 "shutdown" kv shutdown
if t_until 15 daemon_exited; then
	wait "$DPID"
	st=$?
	DPID=""
	t_eq 0 "$st" "the daemon exits 0 after shutdown"
else
	t_fail "the daemon exits after shutdown" "still running"
fi
left=$(with_env "KEYVISOR_REGISTRY=$KV_INSTANCE" | tr '\n' ' ')
t_eq "" "$left" "no process the daemon started is left"
t_check "the socket is removed" test ! -e "$KEYVISOR_SOCKET"
t_check "the registry segment is removed" \
    test ! -e "/dev/shm/keyvisor.$KV_INSTANCE"
t_check "no sanitizer report in the daemon's log" kv_daemon_log_clean
grep -E "Sanitizer|runtime error" "$LOG" | head -5 | sed 's/^/# /'
echo "# test_kinds ran for $(elapsed "$T_START" "$(now)")s with the daemon up"
t_done
