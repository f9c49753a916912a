#!/usr/bin/env bash
# Table 1: N-ReNet 5-fold cross-validation on Stanford Background.
# Trains and scores every variant of the study, then writes its results
# table (the paper's figures beside ours) to runs/nrenet_cv-<dataset>/results.md.
#
#   scripts/ablations/nrenet_cv.sh [--dataset voc|stanford-bg|synthetic] [--iters N]
#       [--gpu N] [--weights VGG_ILSVRC_16_layers.caffemodel] [--dry-run]
#       [--resume] [--out DIR]
#
# Details: tools/run_study.py --help.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../tool.sh" run_study nrenet_cv "$@"
