#!/usr/bin/env bash
# Runs tools/<TOOL>.py with the project's .venv and quiet glog (the shell
# scripts' common body: scripts/main_job.sh, scripts/ablations/*.sh).
#
#   scripts/tool.sh TOOL [ARGS...]      e.g. scripts/tool.sh run_study table4
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "error: $py missing; run scripts/setup.sh first" >&2; exit 1; }
[ $# -ge 1 ] && [ -f "$root/tools/$1.py" ] || {
  echo "error: usage: scripts/tool.sh TOOL [ARGS...], TOOL one of:" \
       $(cd "$root/tools" && ls *.py | sed 's/\.py$//' | grep -v '^_') >&2
  exit 2
}
tool=$1
shift
export GLOG_minloglevel=${GLOG_minloglevel:-2}
exec "$py" "$root/tools/$tool.py" "$@"
