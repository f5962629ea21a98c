#!/bin/sh
# The demo: installs what is missing, builds, then runs a daemon with a
# fleet of keyed workers and shows what keyvisor does with them.  Everything
# it starts lives in a private instance and is stopped at the end.
set -eu
cd "$(dirname "$0")/.."
. scripts/deps.sh
kv_install_deps
if [ -d build/meson-private ]; then
	meson setup --reconfigure build >/dev/null
else
	meson setup build >/dev/null
fi
meson compile -C build >/dev/null

B=$PWD/build
KEYVISORD=$B/supervisord/keyvisord
WORKER=$B/worker/kv-worker
TMP=$(mktemp -d "${TMPDIR:-/tmp}/keyvisor-demo.XXXXXX")
export KEYVISOR_SOCKET=$TMP/demo.sock KEYVISOR_INSTANCE=demo-$$
DPID=""

kv() { "$B/supervisord/keyvisor" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed 's/^\$ kv /$ keyvisor /'; "$@"; }

cleanup() {
	if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then
		kill -TERM "$DPID"
		wait "$DPID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

say "Start the daemon (its log goes to $TMP/keyvisord.log)"
"$KEYVISORD" 2>"$TMP/keyvisord.log" &
DPID=$!
while [ ! -S "$KEYVISOR_SOCKET" ]; do sleep 0.05; done
head -1 "$TMP/keyvisord.log"

say "A fleet of 100 workers, user:1 .. user:100, with one command"
printf '$ seq 1 100 | sed "s/^/user:/" | keyvisor start --stdin -- kv-worker\n'
seq 1 100 | sed 's/^/user:/' | kv start --stdin -- "$WORKER" >"$TMP/started"
head -3 "$TMP/started"
echo "... ($(wc -l <"$TMP/started") workers started)"

say "Who runs what (ls, trimmed) and how many"
run kv ls 'user:?'
run kv count 'user:*'

say "Any process finds a worker by its key, straight from shared memory"
run kv lookup user:42

say "Kill three workers with SIGKILL: each is restarted, with a new pid"
for k in user:7 user:42 user:99; do
	pid=$(kv lookup "$k")
	echo "kill -9 $pid   # $k"
	kill -9 "$pid"
done
for k in user:7 user:42 user:99; do
	kv wait "$k" --timeout 5 >/dev/null
done
kv ls | grep -E '^(KEY|user:(7|42|99) )'

say "A transient job that finishes normally: its name is released"
printf '$ keyvisor start job:report --restart transient -- kv-worker --exit-after 0.3\n'
kv start job:report --restart transient -- "$WORKER" --exit-after 0.3
kv wait job:report --gone --timeout 5
printf '$ keyvisor lookup job:report\n'
kv lookup job:report || echo "(exit status $?: not found, as it should be)"

say "A worker that crashes in a loop: 1 + 3 runs, then it is failed"
printf '$ keyvisor start flaky -- kv-worker --exit-after 0.05 --code 1\n'
kv start flaky -- "$WORKER" --exit-after 0.05 --code 1 >/dev/null
sleep 1
kv status flaky | grep -E 'state|incarnation|reason'

say "The daemon's own view"
kv info | grep -E 'workers|running|restarts|registry_count'

say "Shut down: every worker is stopped, the socket and registry removed"
run kv shutdown
wait "$DPID"
echo "keyvisord exited with status $?"
DPID=""
tail -2 "$TMP/keyvisord.log"
left=$(ls /dev/shm | grep -c "keyvisor.$KEYVISOR_INSTANCE" || true)
echo "registry segments left: $left; socket left: $([ -e "$KEYVISOR_SOCKET" ] && echo yes || echo no)"
