#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# nbdroot benchmark: nbdsrv against nbd-server (copyonwrite), nbdkit
# (--filter=cow file) and qemu-nbd (--snapshot), same image, same run.
# Not part of make check.  Prints one table; see bench/README.md.
#
#   bench/bench.sh [--size-mib 1024] [--runtime 10] [--clients 200]
#                  [--servers nbdsrv,nbd-server,nbdkit-cow,qemu-nbd]
#                  [--workdir DIR]
#
# NBDSRV names the server binary (default: build/nbdsrv/nbdsrv next to
# this script's parent, then nbdsrv on PATH).  Needs nbdcopy, fio (with
# its nbd engine), nbd-server, nbdkit, qemu-nbd and python3-libnbd.
set -e
here=$(cd "$(dirname "$0")" && pwd)
# Debian's interpreter is the one with "import nbd".
PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH
export PATH
if [ -z "${NBDSRV:-}" ]; then
  for c in "$here/../build/nbdsrv/nbdsrv" "$(command -v nbdsrv || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then NBDSRV=$c; break; fi
  done
fi
: "${NBDSRV:?set NBDSRV to the nbdsrv binary}"
NBDSRV=$(cd "$(dirname "$NBDSRV")" && pwd)/$(basename "$NBDSRV")
export NBDSRV
for c in nbdcopy fio nbd-server nbdkit qemu-nbd; do
  command -v "$c" >/dev/null || { echo "bench: missing $c" >&2; exit 1; }
done
/usr/bin/python3 -c 'import nbd' || { echo "bench: python3-libnbd missing" >&2; exit 1; }
# Bound the whole run.
exec timeout -k 10 600 /usr/bin/python3 "$here/bench.py" "$@"
