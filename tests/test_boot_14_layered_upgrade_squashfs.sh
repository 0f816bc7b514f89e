#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The layered root's upgrade scenario (tests/layered-upgrade.sh) on a squashfs base.
LAYERED_FORMAT=squashfs
. "$(dirname "$0")/layered-upgrade.sh"
