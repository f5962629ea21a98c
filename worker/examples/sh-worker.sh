#!/bin/sh
# sh-worker: a keyvisor worker in plain sh, to show that the worker channel
# needs no library.  Each printf below is one write(2), hence one message on
# the SOCK_SEQPACKET channel whose fd keyvisord names in KEYVISOR_NOTIFY_FD.
#
#   sh-worker.sh [VALUE]
#
# It publishes VALUE (default: "hello from sh"), hex-encoded, says READY,
# then sends a HEARTBEAT every second until SIGTERM or SIGINT, and exits 0.
# Without a channel (run by hand) it says so on stderr and exits 1.
set -eu

fd=${KEYVISOR_NOTIFY_FD:-}
case $fd in
'' | 0 | 1 | 2 | *[!0-9]*)
	echo "sh-worker: no worker channel (KEYVISOR_NOTIFY_FD)" >&2
	exit 1
	;;
esac
# dash and mksh redirect only fds 0 to 9; bash takes any.  keyvisord's
# channel is on 3, but anything may start us.
if [ "$fd" -gt 9 ] && [ -z "${BASH_VERSION:-}" ] &&
	command -v bash >/dev/null; then
	exec bash "$0" "$@"
fi

# One message: the whole line in a single printf, so a single write(2).
send() {
	printf '%s\n' "$1" >&"$fd"
}

# The bytes of $1 as hex digits, as the VALUE message wants them.
hex() {
	printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'
}

trap 'exit 0' TERM INT
value=$(hex "${1:-hello from sh}")
send "VALUE${value:+ $value}"
send READY
while :; do
	sleep 1 &
	wait $! || : # a trapped signal interrupts the wait
	send HEARTBEAT
done
