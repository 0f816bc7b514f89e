#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs nbdsrv under valgrind's memcheck, for the valgrind pass of the test
# suite (NBDROOT_VALGRIND=1, see functions.sh).  Errors and definite leaks
# go to $TESTDIR/valgrind-PID.log, which the test's cleanup checks.
# (nbdsrv notices valgrind and polls its rings instead of waiting in
# io_uring_enter, which valgrind does not know to be a blocking call.)
exec valgrind --quiet --error-exitcode=99 --leak-check=full \
  --show-leak-kinds=definite --errors-for-leak-kinds=definite \
  --log-file="${TESTDIR:-.}/valgrind-%p.log" \
  "$NBDSRV_UNDER_VALGRIND" "$@"
