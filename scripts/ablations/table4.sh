#!/usr/bin/env bash
# Table 4: the baseline FCN and H-ReNet variants (a)-(g) on VOC12 val.
# Trains and scores every variant of the study, then writes its results
# table (the paper's figures beside ours) to runs/table4-<dataset>/results.md.
#
#   scripts/ablations/table4.sh [--dataset voc|stanford-bg|synthetic] [--iters N]
#       [--gpu N] [--weights VGG_ILSVRC_16_layers.caffemodel] [--dry-run]
#       [--resume] [--out DIR]
#
# Details: tools/run_study.py --help.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "error: $py missing; run scripts/setup.sh first" >&2; exit 1; }
export GLOG_minloglevel=${GLOG_minloglevel:-2}
exec "$py" "$root/tools/run_study.py" table4 "$@"
