#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The layered root's kill -9 scenario (tests/layered-kill9.sh) on an ext4 base.
LAYERED_FORMAT=ext4
. "$(dirname "$0")/layered-kill9.sh"
