#!/usr/bin/env bash
# L2 normalisation (lambda 100, 1000, 10000) against BN in H-ReNet (d).
# Trains and scores every variant of the study, then writes its results
# table (the paper's figures beside ours) to runs/l2_vs_bn-<dataset>/results.md.
#
#   scripts/ablations/l2_vs_bn.sh [--dataset voc|stanford-bg|synthetic] [--iters N]
#       [--gpu N] [--weights VGG_ILSVRC_16_layers.caffemodel] [--dry-run]
#       [--resume] [--out DIR]
#
# Details: tools/run_study.py --help.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../tool.sh" run_study l2_vs_bn "$@"
