#!/bin/sh
# The whole test suite: installs what is missing, builds with warnings as
# errors, runs every test, then again under ASan+UBSan, and ends with one
# line "N passed, N failed" counted from meson's test logs.
set -eu
cd "$(dirname "$0")/.."
. scripts/deps.sh
kv_install_deps

setup() { # DIR [meson options]
	dir=$1
	shift
	if [ -d "$dir/meson-private" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
}

status=0
setup build
meson compile -C build
meson test -C build --print-errorlogs --num-processes 2 || status=1

setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debug
meson compile -C build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --num-processes 2 || status=1

python3 scripts/count.py build/meson-logs/testlog.txt \
    build-asan/meson-logs/testlog.txt || status=1
exit $status
