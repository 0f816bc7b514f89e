#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# bench/restart.sh [N [RECORDS]]: N persistent overlays (default 1000), each
# with a journal of RECORDS small flushes (default 40000, about 1.3 MB, as
# a lab client gathers in a few hundred flush-heavy minutes), served again
# after a restart: time from the server's start until every client has
# connected and read a block, before and after their journals were
# compacted.  Figures in bench/README.md.
set -e
cd "$(dirname "$0")/.."
NBDSRV=${NBDSRV:-build/nbdsrv/nbdsrv}
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/nbdroot-restart.XXXXXX)}
trap 'rm -rf "$dir"' EXIT
ulimit -n 65536 2>/dev/null || true
PATH=/usr/bin:$PATH /usr/bin/python3 bench/restart.py "$NBDSRV" "$dir" "${1:-1000}" "${2:-40000}"
