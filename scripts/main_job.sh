#!/usr/bin/env bash
# The main job (what scripts/setup.sh runs last): on the synthetic context
# dataset, a small N-ReNet against a local-context baseline, trained and
# scored on the CPU; report in runs/main-<date>-<time>/report.md. All
# arguments go to tools/main_job.py (--quick, --iters N, --seed N,
# --format F --root DIR, --out DIR; see --help).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/tool.sh" main_job "$@"
