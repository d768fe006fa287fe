#!/usr/bin/env bash
# Shows that the test command's last line cannot read as success when tests
# did not all run and pass: test-summary.sh on four recorded shapes of
# `cargo test` output (all pass, one fails, a crate does not compile, a
# binary crashes). Run by deploy/local/test.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass='     Running tests/a.rs (target/debug/deps/a-1)
test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s
   Doc-tests a
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.0s'
printf '%s\n' "$pass" >"$tmp/pass"
printf '%s\n' "$pass" '     Running tests/b.rs (target/debug/deps/b-2)' 'test x ... FAILED' \
  'test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s' >"$tmp/fail"
printf '%s\n' 'error[E0425]: cannot find value `x` in this scope' 'error: could not compile `api` (test "api") due to 1 previous error' >"$tmp/nocompile"
printf '%s\n' "$pass" '     Running tests/c.rs (target/debug/deps/c-3)' 'running 2 tests' \
  "error: test failed, to rerun pass \`-p c --test c\`" 'Caused by: process didn'"'"'t exit successfully (signal: 6, SIGABRT: process abort signal)' >"$tmp/crash"
rc=0
check() {  # check NAME EXIT WANT_STATUS WANT_TEXT
  local got status=0
  got=$("$here/test-summary.sh" "$tmp/$1" "$2" 2>&1) || status=$?
  if [ "$status" != "$3" ] || [[ "$got" != *"$4"* ]]; then
    printf 'test-summary %s: exit %s (want %s), output:\n%s\n' "$1" "$status" "$3" "$got" >&2
    rc=1
  fi
}
check pass 0 0 "tests: 3 passed, 0 failed, 0 binaries did not report, 0 crates did not compile, 0 house rules broken: OK"
check fail 101 1 "4 passed, 1 failed"
check nocompile 101 1 "did not compile: api"
check crash 101 1 "test binary did not report (crashed or aborted): tests/c.rs (c-3)"
# A clean-looking output with a failing exit status is not a success either.
check pass 101 1 "FAILED (cargo test exit 101)"
[ $rc -eq 0 ] && echo "test-summary: the four cases read as they should"
exit $rc
