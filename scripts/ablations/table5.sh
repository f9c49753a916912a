#!/usr/bin/env bash
# Table 5: renet1 fed by pool4 / pool5 / conv7, and conv7 (+pool5 (+pool4)).
# Trains and scores every variant of the study, then writes its results
# table (the paper's figures beside ours) to runs/table5-<dataset>/results.md.
#
#   scripts/ablations/table5.sh [--dataset voc|stanford-bg|synthetic] [--iters N]
#       [--gpu N] [--weights VGG_ILSVRC_16_layers.caffemodel] [--dry-run]
#       [--resume] [--out DIR]
#
# Details: tools/run_study.py --help.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../tool.sh" run_study table5 "$@"
