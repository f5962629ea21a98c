#!/bin/sh
# The symbol-leak test (B16), in TAP.
#
#   symbols.sh NM LIBKEYVISOR_SO LIBKEYVISOR_A ALLOW_LIST
#
# 1. The dynamic symbols the .so defines are exactly the allow-list: one
#    more is a leak (an internal function become ABI), one fewer is a
#    function the headers promise and the library does not export.
# 2. Every API symbol carries the version node LIBKEYVISOR_0.
# 3. Every global symbol the static archive defines is kv_-prefixed (B1):
#    an archive puts all of them in its users' namespace.
set -u
nm=$1 so=$2 ar=$3 allow=$4
# No trap for the cleanup: dash leaks a trap's text, and the valgrind
# setup runs this script under valgrind.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kv-symbols.XXXXXX")

echo 1..3
grep -v '^#' "$allow" | grep . | LC_ALL=C sort >"$tmp/allow"
"$nm" -D --defined-only "$so" >"$tmp/nm" || {
	echo "not ok 1 - nm -D $so failed"
	rm -rf "$tmp"
	exit 1
}
awk '{ print $3 }' "$tmp/nm" | sed 's/@.*//' | LC_ALL=C sort >"$tmp/have"
if diff -u "$tmp/allow" "$tmp/have" >"$tmp/diff"; then
	echo "ok 1 - libkeyvisor.so exports exactly the allow-list"
else
	echo "not ok 1 - libkeyvisor.so exports differ from the allow-list"
	sed 's/^/# /' "$tmp/diff"
fi

awk '$3 !~ /^LIBKEYVISOR_0$/ && $3 !~ /@@LIBKEYVISOR_0$/ { print $3 }' \
    "$tmp/nm" >"$tmp/unversioned"
if [ -s "$tmp/unversioned" ]; then
	echo "not ok 2 - symbols without the version node LIBKEYVISOR_0"
	sed 's/^/# /' "$tmp/unversioned"
else
	echo "ok 2 - every export is versioned LIBKEYVISOR_0"
fi

"$nm" -g --defined-only "$ar" 2>/dev/null |
    awk 'NF == 3 && $3 !~ /^kv_/ { print $3 }' >"$tmp/foreign"
if [ -s "$tmp/foreign" ]; then
	echo "not ok 3 - libkeyvisor.a defines globals outside kv_*"
	sed 's/^/# /' "$tmp/foreign"
else
	echo "ok 3 - libkeyvisor.a defines only kv_* globals"
fi
rm -rf "$tmp"
