# SPDX-License-Identifier: GPL-2.0-or-later
# bench: build fragment, included from the top-level Makefile.am
EXTRA_DIST += bench/bench.sh bench/bench.py bench/serverproc.py bench/README.md \
	bench/boot-storm.sh bench/boot-storm.py bench/data/debian-boot.trace.gz \
	bench/servers.py bench/lab-storm.sh bench/lab-storm.py \
	bench/data/debian-first-boot.trace.gz bench/restart.sh bench/restart.py \
	bench/fairness.sh bench/fairness.py \
	bench/layered-bytes.sh bench/trace-order.sh

# The boot-storm replay client (bench/boot-storm.sh); not installed.
noinst_PROGRAMS += bench/replay
bench_replay_SOURCES = bench/replay.c
bench_replay_CFLAGS = $(AM_CFLAGS) $(LIBNBD_CFLAGS) $(ZLIB_CFLAGS) -pthread
bench_replay_LDADD = $(LIBNBD_LIBS) $(ZLIB_LIBS)
bench_replay_LDFLAGS = $(AM_LDFLAGS) -pthread
