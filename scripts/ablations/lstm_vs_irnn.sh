#!/usr/bin/env bash
# LSTM vs IRNN units in H-ReNet (c), IRNN width matched in parameters.
# Trains and scores every variant of the study, then writes its results
# table (the paper's figures beside ours) to runs/lstm_vs_irnn-<dataset>/results.md.
#
#   scripts/ablations/lstm_vs_irnn.sh [--dataset voc|stanford-bg|synthetic] [--iters N]
#       [--gpu N] [--weights VGG_ILSVRC_16_layers.caffemodel] [--dry-run]
#       [--resume] [--out DIR]
#
# Details: tools/run_study.py --help.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../tool.sh" run_study lstm_vs_irnn "$@"
