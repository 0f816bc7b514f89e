#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The layered root's upgrade scenario (tests/layered-upgrade.sh) on an ext4 base.
LAYERED_FORMAT=ext4
. "$(dirname "$0")/layered-upgrade.sh"
