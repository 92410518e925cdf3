#!/usr/bin/env bash
# Run Jobmon 3.6's own swarm tests (tests/integration/swarm, from the shared source tarball) with
# jobmon-gateway's drop-in as the swarm's gateway, then a real workflow through workflow.run().
#
# Usage: tests/jobmon_swarm/run_swarm_tests.sh [--reference] [--no-workflow] [PYTEST_ARGS...]
#   --reference    run the tests on Jobmon's own gateway instead (the baseline to compare with)
#   --no-workflow  skip the 301-task workflow (run_workflow.py) after the tests
#   PYTEST_ARGS    passed on to pytest (e.g. -k test_blocking_update_timeout)
# Environment:
#   JOBMON36_VENV  the Jobmon 3.6 venv to use (default: .jobmon36/venv in the repo; built with the
#                  shared install.sh if missing, about a minute, then jobmon-gateway is installed
#                  into it in editable mode with the test dependencies Jobmon's tests need)
#   JOBMON_SHARED  the shared folder holding jobmon-3.6/ (default: ../shared beside the repo)
#
# Exits non-zero if a test fails, if the output reports an "Unclosed client session" (aiohttp's
# ResourceWarning, hidden by Python's default filters, is shown with -W always::ResourceWarning), or
# if the workflow does not end with every task DONE. test_swarm_terminate is deselected: its sequential
# distributor runs `sleep 1000` and it hangs on these machines whatever the gateway.
# Takes about 5 minutes for the tests and one more for the workflow on two cores.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
shared=${JOBMON_SHARED:-$repo/../shared}/jobmon-3.6
venv=${JOBMON36_VENV:-$repo/.jobmon36/venv}
gateway=dropin
workflow=yes
while [ $# -gt 0 ]; do
  case $1 in
    --reference) gateway=reference; shift ;;
    --no-workflow) workflow=no; shift ;;
    *) break ;;
  esac
done
[ -f "$shared/jobmon-3.6-src.tar.gz" ] || { echo "no Jobmon 3.6 tarball in $shared" >&2; exit 2; }

bash "$shared/install.sh" "$venv"
if ! "$venv/bin/python" -c "import jobmon_gateway.jobmon, pytest_asyncio, mock, filelock, pytest_mock" 2>/dev/null; then
  "$venv/bin/python" -m pip install -q -e "$repo" pytest "pytest-asyncio>=1.0.0" mock filelock pytest-mock
fi

src=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$src" "$log"' EXIT
tar -xzf "$shared/jobmon-3.6-src.tar.gz" -C "$src"

plugins=(-p loopback_plugin)
[ "$gateway" = dropin ] && plugins+=(-p dropin_plugin)
status=0
(
  cd "$src"
  PATH="$venv/bin:$PATH" PYTHONPATH="$shared:$repo/tests/jobmon_swarm" \
    python -m pytest "${plugins[@]}" tests/integration/swarm -p no:cacheprovider \
    -W always::ResourceWarning \
    --deselect tests/integration/swarm/test_swarm.py::test_swarm_terminate "$@"
) 2>&1 | tee "$log" || status=$?
unclosed=$(grep -c "Unclosed client session" "$log" || true)
echo "== gateway: $gateway; pytest exit: $status; \"Unclosed client session\" lines: $unclosed"
if [ "$gateway" = dropin ] && [ "$unclosed" -gt 0 ]; then status=1; fi

if [ "$workflow" = yes ]; then
  JOBMON36_SERVE="$shared/serve.py" "$venv/bin/python" "$repo/tests/jobmon_swarm/run_workflow.py" \
    --gateways reference,dropin || status=1
fi
exit "$status"
