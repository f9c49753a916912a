#!/usr/bin/env bash
# the training-size study: crops 256x320, 320x400, 400x500 for the FCN and H-ReNet (d).
# Trains and scores every variant of the study, then writes its results
# table (the paper's figures beside ours) to runs/crop_size-<dataset>/results.md.
#
#   scripts/ablations/crop_size.sh [--dataset voc|stanford-bg|synthetic] [--iters N]
#       [--gpu N] [--weights VGG_ILSVRC_16_layers.caffemodel] [--dry-run]
#       [--resume] [--out DIR]
#
# Details: tools/run_study.py --help.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "error: $py missing; run scripts/setup.sh first" >&2; exit 1; }
export GLOG_minloglevel=${GLOG_minloglevel:-2}
exec "$py" "$root/tools/run_study.py" crop_size "$@"
