#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Two nbdsrv on one machine, different ports, one shared overlay
# directory: a guest fails over from the first, killed with -9, to the
# second with every synced write intact; the first, restarted, refuses
# it meanwhile (failover_boot in failover-functions.sh says how).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/boot-functions.sh"
. "$(dirname "$0")/failover-functions.sh"

mkdir -p "$TESTDIR/overlays"
failover_boot "$TESTDIR/overlays" "$TESTDIR/overlays"
