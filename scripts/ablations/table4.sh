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
exec "$(dirname "${BASH_SOURCE[0]}")/../tool.sh" run_study table4 "$@"
