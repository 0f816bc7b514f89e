# SPDX-License-Identifier: GPL-2.0-or-later
# nbdsrv/: the io_uring NBD server.
sbin_PROGRAMS += nbdsrv/nbdsrv
nbdsrv_nbdsrv_SOURCES = \
	nbdsrv/nbdsrv.h \
	nbdsrv/main.c \
	nbdsrv/listen.c \
	nbdsrv/config.c \
	nbdsrv/keys.c \
	nbdsrv/confmsg.c \
	nbdsrv/check.c \
	nbdsrv/reload.c \
	nbdsrv/acl.c \
	nbdsrv/binding.c \
	nbdsrv/minting.c \
	nbdsrv/limits.c \
	nbdsrv/budget.c \
	nbdsrv/image.c \
	nbdsrv/base-find.c \
	nbdsrv/shared.c \
	nbdsrv/pagecache.c \
	nbdsrv/overlay.c \
	nbdsrv/overlay-lock.c \
	nbdsrv/damaged.c \
	nbdsrv/fence.c \
	nbdsrv/journal.c \
	nbdsrv/overlay-names.c \
	nbdsrv/loop.c \
	nbdsrv/ring.c \
	nbdsrv/conn.c \
	nbdsrv/output.c \
	nbdsrv/pacing.c \
	nbdsrv/attach.c \
	nbdsrv/idle.c \
	nbdsrv/attach-stats.c \
	nbdsrv/input.c \
	nbdsrv/trace.c \
	nbdsrv/ctl.c \
	nbdsrv/ctlclient.c \
	nbdsrv/handshake.c \
	nbdsrv/transmit.c
nbdsrv_nbdsrv_CFLAGS = $(AM_CFLAGS) $(LIBURING_CFLAGS) $(ZLIB_CFLAGS) -pthread
nbdsrv_nbdsrv_LDADD = common/libcommon.a $(LIBURING_LIBS) $(ZLIB_LIBS)
nbdsrv_nbdsrv_LDFLAGS = $(AM_LDFLAGS) -pthread
