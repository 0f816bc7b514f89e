# SPDX-License-Identifier: GPL-2.0-or-later
# common/: code more than one program uses.
noinst_LIBRARIES += common/libcommon.a
common_libcommon_a_SOURCES = \
	common/nbd-protocol.h \
	common/log.c common/log.h \
	common/export-name.c common/export-name.h \
	common/util.c common/util.h \
	common/io.c common/io.h \
	common/clock.c common/clock.h \
	common/vec.c common/vec.h

common_libcommon_a_SOURCES += \
	common/overlay-format.c common/overlay-format.h \
	common/base-pin.c common/base-pin.h \
	common/layered-state.h
