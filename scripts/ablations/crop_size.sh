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
exec "$(dirname "${BASH_SOURCE[0]}")/../tool.sh" run_study crop_size "$@"
