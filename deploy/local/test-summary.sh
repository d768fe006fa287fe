#!/usr/bin/env bash
# test-summary.sh OUTPUT EXIT [BROKEN...]: the last lines of the test command,
# from `cargo test`'s OUTPUT (a file) and its EXIT status, plus the names of
# broken house rules. Counts passed and failed tests, lists the test binaries
# that started but never reported (a crash, an abort) and the crates that did
# not compile, and ends with one line that reads OK only when everything ran
# and passed. Exits 0 then, 1 otherwise. deploy/local/test-summary-selftest.sh
# shows the four cases (all pass, one fails, no compile, a crash).
set -euo pipefail
out=$1 rc=$2
shift 2
python3 - "$out" "$rc" "$@" <<'PY'
import re, sys
path, rc, broken = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
passed = failed = 0
silent, current, uncompiled = [], None, []
for line in open(path, errors="replace"):
    line = line.rstrip("\n")
    m = re.match(r"\s+Running (\S+) \((.*)\)", line) or re.match(r"\s+(Doc-tests \S+)", line)
    if m:
        if current:
            silent.append(current)
        current = m.group(1) if "Doc-tests" in line else f"{m.group(1)} ({m.group(2).rsplit('/', 1)[-1]})"
        continue
    m = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed", line)
    if m:
        passed += int(m.group(1)); failed += int(m.group(2)); current = None
        continue
    m = re.match(r"error: could not compile `([^`]+)`", line)
    if m and m.group(1) not in uncompiled:
        uncompiled.append(m.group(1))
if current:
    silent.append(current)
for s in silent:
    print(f"test binary did not report (crashed or aborted): {s}")
for c in uncompiled:
    print(f"did not compile: {c}")
for b in broken:
    print(f"house rule broken: {b}")
ok = rc == 0 and failed == 0 and not silent and not uncompiled and not broken and passed > 0
print(f"tests: {passed} passed, {failed} failed, {len(silent)} binaries did not report, "
      f"{len(uncompiled)} crates did not compile, {len(broken)} house rules broken: "
      + ("OK" if ok else f"FAILED (cargo test exit {rc})"))
sys.exit(0 if ok else 1)
PY
