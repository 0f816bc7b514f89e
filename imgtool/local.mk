# SPDX-License-Identifier: GPL-2.0-or-later
# imgtool: build fragment, included from the top-level Makefile.am
sbin_PROGRAMS += imgtool/imgtool
imgtool_imgtool_SOURCES = \
	imgtool/imgtool.h \
	imgtool/main.c \
	imgtool/util.c \
	imgtool/sha256.c \
	imgtool/scan.c \
	imgtool/exclude.c \
	imgtool/fstab.c \
	imgtool/build.c \
	imgtool/progress.c \
	imgtool/squashfs.c \
	imgtool/sqorder.c \
	imgtool/sqfile.c \
	imgtool/imagefs.c \
	imgtool/template.c \
	imgtool/store.c \
	imgtool/info.c \
	imgtool/gc.c \
	imgtool/commit.c \
	imgtool/commit-layered.c \
	imgtool/fold.c \
	imgtool/view.c \
	imgtool/state.c \
	imgtool/upgrade.c \
	imgtool/imgread.c \
	imgtool/imgread-ext4.c \
	imgtool/imgread-squashfs.c \
	imgtool/rollback.c \
	imgtool/sync.c \
	imgtool/check-overlay.c \
	imgtool/cpio.c \
	imgtool/modules.c \
	imgtool/initrd.c \
	imgtool/pxe.c
# The initrd agent imgtool packs by default: the installed one.  A build
# tree's own agent (initrd/nbdroot-agent next to imgtool/) is preferred
# when imgtool runs from the build tree.
imgtool_imgtool_CPPFLAGS = $(AM_CPPFLAGS) \
	-DAGENT_PATH='"$(pkglibexecdir)/nbdroot-agent"' \
	$(EXT2FS_CFLAGS) $(ZLIB_CFLAGS) $(NETTLE_CFLAGS) \
	$(LIBSQUASHFS_CFLAGS)
imgtool_imgtool_LDADD = common/libcommon.a $(EXT2FS_LIBS) $(ZLIB_LIBS) \
	$(NETTLE_LIBS) $(LIBSQUASHFS_LIBS)
