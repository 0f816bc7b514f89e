#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# bench/fairness.sh: another client's 4 KiB reads on the same worker while
# one client floods it, p50/p99 latency, against the same reads without a
# flood.  One worker thread (all clients on it); floods: BLOCK_STATUS of
# a whole fragmented disk in a loop, and pipelined 32 MiB READs never
# read.  Figures in bench/README.md.
set -e
cd "$(dirname "$0")/.."
NBDSRV=${NBDSRV:-build/nbdsrv/nbdsrv}
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/nbdroot-fair.XXXXXX)}
trap 'rm -rf "$dir"' EXIT
PATH=/usr/bin:$PATH /usr/bin/python3 bench/fairness.py "$NBDSRV" "$dir"
