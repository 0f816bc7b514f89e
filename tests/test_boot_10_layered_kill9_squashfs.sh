#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The layered root's kill -9 scenario (tests/layered-kill9.sh) on a squashfs base.
LAYERED_FORMAT=squashfs
. "$(dirname "$0")/layered-kill9.sh"
