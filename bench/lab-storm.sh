#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# nbdroot lab storm: N diskless machines, each with its own address, boot
# at once through one shaped server link, all on this machine: network
# namespaces made (and removed) by the harness, a veth pair shaped to the
# link rate, the servers in one namespace and bench/replay in the other.
# nbdsrv, nbd-server and qemu-nbd serve the same image in turn, in the same
# run.  Prints a table, the targets, a CDF plot of the clients' replay
# times (PNG), and last one summary line for nbdsrv.  Needs root.  Not part
# of make check (tests/test_bench_01_lab_storm.sh runs a small one).
#
#   bench/lab-storm.sh [--clients N] [--link RATE] [--trace NAME|FILE]
#                      [--servers nbdsrv,nbd-server,qemu-nbd] [--arrival SECONDS]
#                      [--latency MS] [--pace] [--no-pacing] [--timeout SECS] [--image IMG]
#                      [--workdir DIR] [--out DIR]
#
# --clients  machines in the lab (200); each connects from its own address
# --link     the server's link, both directions (1gbit; 10gbit, 100mbit, ...)
# --latency  added round trip in ms (0.2), where the kernel has sch_netem
# --trace    boot (bench/data/debian-boot.trace.gz, a later boot), first-boot
#            (bench/data/debian-first-boot.trace.gz), or a trace file
# --arrival  the clients start evenly over this many seconds (0: all at once)
# --pace     keep the trace's think times (default: as fast as served)
# --no-pacing  nbdsrv without link-rate (by default it is told the link's rate)
# --timeout  bounds each server's storm (300 s)
# --out      where the table's data, per-client times and cdf.png go
#            (./lab-storm-results)
# NBDSRV and REPLAY name the binaries (default: build/nbdsrv/nbdsrv and
# build/bench/replay, or BUILD_DIR's).
set -e
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH
export PATH
[ "$(id -u)" = 0 ] || { echo "lab-storm: needs root (network namespaces, tc)" >&2; exit 1; }
build=${BUILD_DIR:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
: "${NBDSRV:=$build/nbdsrv/nbdsrv}"
: "${REPLAY:=$build/bench/replay}"
for b in "$NBDSRV" "$REPLAY"; do
  [ -x "$b" ] || { echo "lab-storm: $b is not built (scripts/build.sh)" >&2; exit 1; }
done
NBDSRV=$(cd "$(dirname "$NBDSRV")" && pwd)/$(basename "$NBDSRV")
REPLAY=$(cd "$(dirname "$REPLAY")" && pwd)/$(basename "$REPLAY")
export NBDSRV REPLAY
for c in ip tc nbd-server qemu-nbd; do
  command -v "$c" >/dev/null ||
    { echo "lab-storm: missing $c (scripts/install-deps.sh)" >&2; exit 1; }
done

# Whatever happens to the harness (a SIGKILL from the timeout below
# included), this run's namespaces and what runs in them go.
tag=$$
cleanup() {
  local ns
  for ns in nbdlab-$tag-srv nbdlab-$tag-cli; do
    if ip netns list | grep -qw "$ns"; then
      ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT
# Bound the whole run: three storms of at most --timeout plus start-up.
# In the background, so that an interrupt reaches this shell at once; it
# passes it on as SIGTERM, on which the harness stops its servers and
# removes its namespaces itself.
timeout -k 10 3600 /usr/bin/python3 "$here/lab-storm.py" --tag "$tag" "$@" &
child=$!
trap 'kill -TERM $child 2>/dev/null' INT TERM
rc=0
while :; do
  wait $child && rc=0 || rc=$?
  kill -0 $child 2>/dev/null || break
done
exit $rc
