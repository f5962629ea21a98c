#!/usr/bin/env python3
"""Prints 'N passed, N failed' from meson test logs (meson-logs/testlog.txt).

A test that speaks TAP counts each of its subtests; any other test counts
once.  A TAP test whose run failed without a failing subtest (it crashed or
timed out) counts one failure more.  Exits 1 when anything failed.
"""
import re
import sys

def tests(text):
    """Yields (result line, stdout lines) for each test in a testlog.txt."""
    for part in re.split(r"(?m)^=+ \d+/\d+ =+$", text)[1:]:
        m = re.search(r"(?m)^result:\s+(.*)$", part)
        yield (m.group(1) if m else "unknown"), part.splitlines()


passed = failed = skipped = 0
for path in sys.argv[1:]:
    with open(path, errors="replace") as f:
        text = f.read()
    for result, lines in tests(text):
        ok = result.startswith("exit status 0") or "passed" in result
        if "skipped" in result or result.startswith("exit status 77"):
            skipped += 1
            continue
        good = sum(1 for l in lines if re.match(r"ok\b", l))
        bad = sum(1 for l in lines if re.match(r"not ok\b", l))
        if good + bad == 0:
            passed, failed = passed + ok, failed + (not ok)
            continue
        passed += good
        failed += bad + (1 if not ok and bad == 0 else 0)
tail = f", {skipped} skipped" if skipped else ""
print(f"{passed} passed, {failed} failed{tail}")
sys.exit(1 if failed else 0)
