#!/usr/bin/env bash
# The test command (`make test`): with no arguments, one pytest process per package; with arguments,
# one pytest run with exactly those (e.g. `make test PYTEST_ARGS="-k roundtrip"`).
#
# Why a process per package: in one long pytest process that had started and ended hundreds of threads
# using torch, threads ending after inference were seen spinning in the clean-up of torch's bundled
# MKL memory manager (mm_cleanup_thread_cbk, with the main thread in mm_account_ptr_by_tid) for
# minutes, which stretched a 5-minute run to 19 and starved the timing of the end-to-end tests. The
# same tests alone, in a fresh process, take seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then
    exec python -m pytest "$@"
fi
status=0
failed=()
for package in src/internvla_msgs src/internvla_policy src/internvla_grounding src/internvla_bringup; do
    echo "=== $package"
    if ! python -m pytest "$package"; then
        status=1
        failed+=("$package")
    fi
done
if [ "$status" -ne 0 ]; then
    echo "=== tests failed in: ${failed[*]}"
else
    echo "=== every package passed"
fi
exit "$status"
