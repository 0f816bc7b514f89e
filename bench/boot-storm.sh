#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# nbdroot boot storm: N clients at once replay a recorded Debian boot
# (bench/data/debian-boot.trace.gz, made by scripts/make-boot-trace.sh)
# against nbdsrv (own overlay per client), nbd-server (copyonwrite, flush)
# and qemu-nbd (--snapshot), all serving the same image on 127.0.0.1, in
# the same run.  Prints one side-by-side table; see bench/README.md.
# Not part of make check.
#
#   bench/boot-storm.sh [--clients 50,200,1000] [--timeout 120]
#                       [--servers nbdsrv,nbd-server,qemu-nbd]
#                       [--trace FILE] [--image IMG] [--depth trace|N]
#                       [--threads T] [--ramp MS] [--pace] [--pin S/R]
#                       [--workdir DIR] [--json FILE]
#
# --pace keeps the boot's think times (a real storm's load: what matters
# is how much each boot is slowed down); by default the clients go as
# fast as the server answers (its throughput).  --pin 0/1 runs the
# servers on CPU 0 and the replay on CPU 1: the replay stands in for N
# machines, and on a shared CPU its work delays the server's.
# --image serves that image (the one make-boot-trace.sh booted, say);
# by default an image of random data of the size the trace names.
# --timeout bounds each run: a server that leaves clients unserved is
# reported as timed out.  NBDSRV and REPLAY name the binaries (default:
# build/nbdsrv/nbdsrv and build/bench/replay, or BUILD_DIR's).
set -e
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH
export PATH
build=${BUILD_DIR:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
: "${NBDSRV:=$build/nbdsrv/nbdsrv}"
: "${REPLAY:=$build/bench/replay}"
for b in "$NBDSRV" "$REPLAY"; do
  [ -x "$b" ] || { echo "boot-storm: $b is not built (scripts/build.sh)" >&2; exit 1; }
done
NBDSRV=$(cd "$(dirname "$NBDSRV")" && pwd)/$(basename "$NBDSRV")
REPLAY=$(cd "$(dirname "$REPLAY")" && pwd)/$(basename "$REPLAY")
export NBDSRV REPLAY
for c in nbd-server qemu-nbd; do
  command -v "$c" >/dev/null ||
    { echo "boot-storm: missing $c (scripts/install-deps.sh)" >&2; exit 1; }
done
args=("$@")
case " $* " in *" --trace "*) ;; *) args+=(--trace "$here/data/debian-boot.trace.gz") ;; esac
# Bound the whole run: 9 runs of at most --timeout (default 120 s) plus
# start, stop and the image.
exec timeout -k 10 3600 /usr/bin/python3 "$here/boot-storm.py" "${args[@]}"
