#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Configures and builds nbdroot out of tree in DIR (default: build/), with
# -Werror.  Extra arguments go to configure.
set -e
cd "$(dirname "$0")/.."
dir=${BUILD_DIR:-build}
[ -x configure ] || ./autogen.sh
mkdir -p "$dir"
cd "$dir"
[ -f Makefile ] || ../configure --enable-werror "$@"
make -j"$(nproc)"
