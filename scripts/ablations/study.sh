#!/usr/bin/env bash
# The ablation scripts' common body: runs tools/run_study.py STUDY [ARGS]
# with the project's .venv (each scripts/ablations/<study>.sh calls this).
#
#   scripts/ablations/study.sh STUDY [tools/run_study.py flags]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "error: $py missing; run scripts/setup.sh first" >&2; exit 1; }
export GLOG_minloglevel=${GLOG_minloglevel:-2}
exec "$py" "$root/tools/run_study.py" "$@"
