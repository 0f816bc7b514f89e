# SPDX-License-Identifier: GPL-2.0-or-later
# tests/fuzz.mk: libFuzzer targets (included from tests/local.mk).
#
# Built with FUZZ_CC (clang, found by configure) and its own explicit
# rules, like the musl agent in initrd/local.mk: -fsanitize=fuzzer cannot
# go through $(CC).  Each target compiles the real sources it drives.
# "make fuzz-check" builds them, replays every input kept in
# tests/fuzz/regress/TARGET/ (crashes found once, fixed since), then runs
# each target for FUZZ_SECONDS on a copy of its seed corpus,
# tests/fuzz/corpus/TARGET/.  See tests/fuzz/README.md.
FUZZ_SECONDS = 30
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -fno-omit-frame-pointer \
	$(WARN_CFLAGS) -I$(top_builddir) -I$(top_srcdir)/common

FUZZ_TARGETS = tests/fuzz_protocol tests/fuzz_config tests/fuzz_export_name \
	tests/fuzz_cmdline tests/fuzz_modules tests/fuzz_cpio

fuzz_common_sources = $(srcdir)/common/log.c $(srcdir)/common/util.c \
	$(srcdir)/common/export-name.c $(srcdir)/common/overlay-format.c \
	$(srcdir)/common/io.c $(srcdir)/common/clock.c $(srcdir)/common/vec.c \
	$(srcdir)/common/base-pin.c
fuzz_common_headers = $(srcdir)/common/log.h $(srcdir)/common/util.h \
	$(srcdir)/common/io.h $(srcdir)/common/clock.h $(srcdir)/common/vec.h \
	$(srcdir)/common/export-name.h $(srcdir)/common/overlay-format.h \
	$(srcdir)/common/nbd-protocol.h $(top_builddir)/config.h
# Everything of nbdsrv but main.c, the event loop, the ring, connections
# and their output, the attach thread and its scheduling
# (the target stands in for those) and the control socket, picked from nbdsrv's own source list
# so that a new file of nbdsrv is fuzzed with the rest.
fuzz_nbdsrv_skip = nbdsrv/main.c nbdsrv/loop.c nbdsrv/ring.c nbdsrv/conn.c \
	nbdsrv/output.c nbdsrv/attach.c nbdsrv/idle.c nbdsrv/ctl.c \
	nbdsrv/ctlclient.c
fuzz_nbdsrv_flags = -I$(top_srcdir)/nbdsrv $(LIBURING_CFLAGS) $(ZLIB_CFLAGS) -pthread
fuzz_nbdsrv_libs = $(LIBURING_LIBS) $(ZLIB_LIBS)
fuzz_imgtool_sources = $(srcdir)/imgtool/util.c $(srcdir)/common/log.c \
	$(srcdir)/common/util.c $(srcdir)/common/io.c $(srcdir)/common/clock.c \
	$(srcdir)/common/vec.c
fuzz_imgtool_flags = -I$(top_srcdir)/imgtool $(ZLIB_CFLAGS) $(NETTLE_CFLAGS)

EXTRA_DIST += tests/fuzz tests/fuzz_protocol.c tests/fuzz_config.c \
	tests/fuzz_export_name.c tests/fuzz_cmdline.c tests/fuzz_modules.c \
	tests/fuzz_cpio.c tests/fuzz.h
CLEANFILES += $(FUZZ_TARGETS)

fuzz-targets: $(FUZZ_TARGETS)

tests/fuzz_protocol: $(srcdir)/tests/fuzz_protocol.c $(srcdir)/tests/fuzz.h $(nbdsrv_nbdsrv_SOURCES) \
		$(fuzz_common_sources) $(fuzz_common_headers)
	@$(MKDIR_P) tests
	$(AM_V_CCLD)srcs=; for f in $(nbdsrv_nbdsrv_SOURCES); do \
	  case " $(fuzz_nbdsrv_skip) " in *" $$f "*) continue;; esac; \
	  case $$f in *.c) srcs="$$srcs $(srcdir)/$$f";; esac; \
	done; \
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(fuzz_nbdsrv_flags) -o $@ \
		$(srcdir)/tests/fuzz_protocol.c $$srcs \
		$(fuzz_common_sources) $(fuzz_nbdsrv_libs)

fuzz_config_sources = $(srcdir)/nbdsrv/config.c $(srcdir)/nbdsrv/keys.c \
	$(srcdir)/nbdsrv/confmsg.c \
	$(srcdir)/nbdsrv/check.c $(srcdir)/nbdsrv/reload.c $(srcdir)/nbdsrv/acl.c \
	$(srcdir)/nbdsrv/image.c $(fuzz_common_sources)
tests/fuzz_config: $(srcdir)/tests/fuzz_config.c $(fuzz_config_sources) \
		$(srcdir)/nbdsrv/nbdsrv.h $(fuzz_common_headers)
	@$(MKDIR_P) tests
	$(AM_V_CCLD)$(FUZZ_CC) $(FUZZ_CFLAGS) $(fuzz_nbdsrv_flags) -o $@ \
		$(srcdir)/tests/fuzz_config.c $(fuzz_config_sources) \
		$(fuzz_nbdsrv_libs)

tests/fuzz_export_name: $(srcdir)/tests/fuzz_export_name.c \
		$(srcdir)/common/export-name.c $(fuzz_common_headers)
	@$(MKDIR_P) tests
	$(AM_V_CCLD)$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ \
		$(srcdir)/tests/fuzz_export_name.c $(srcdir)/common/export-name.c

# The agent is built with musl and without config.h; so is this target,
# but with the host's C library.
tests/fuzz_cmdline: $(srcdir)/tests/fuzz_cmdline.c $(srcdir)/initrd/cmdline.c \
		$(srcdir)/initrd/servers.c $(srcdir)/initrd/agent.h $(srcdir)/common/nbd-protocol.h
	@$(MKDIR_P) tests
	$(AM_V_CCLD)$(FUZZ_CC) $(FUZZ_CFLAGS) -std=gnu11 -D_GNU_SOURCE \
		-I$(top_srcdir)/initrd -o $@ \
		$(srcdir)/tests/fuzz_cmdline.c $(srcdir)/initrd/cmdline.c \
		$(srcdir)/initrd/servers.c

tests/fuzz_modules: $(srcdir)/tests/fuzz_modules.c $(srcdir)/tests/fuzz.h $(srcdir)/imgtool/modules.c \
		$(fuzz_imgtool_sources) $(srcdir)/imgtool/imgtool.h $(fuzz_common_headers)
	@$(MKDIR_P) tests
	$(AM_V_CCLD)$(FUZZ_CC) $(FUZZ_CFLAGS) $(fuzz_imgtool_flags) -o $@ \
		$(srcdir)/tests/fuzz_modules.c $(srcdir)/imgtool/modules.c \
		$(fuzz_imgtool_sources)

tests/fuzz_cpio: $(srcdir)/tests/fuzz_cpio.c $(srcdir)/imgtool/cpio.c \
		$(fuzz_imgtool_sources) $(srcdir)/imgtool/imgtool.h $(fuzz_common_headers)
	@$(MKDIR_P) tests
	$(AM_V_CCLD)$(FUZZ_CC) $(FUZZ_CFLAGS) $(fuzz_imgtool_flags) -o $@ \
		$(srcdir)/tests/fuzz_cpio.c $(srcdir)/imgtool/cpio.c \
		$(fuzz_imgtool_sources) $(ZLIB_LIBS)

fuzz-check:
	@if test "x$(FUZZ_CC)" = xno; then \
	  echo "fuzz-check: clang not found (install clang and libclang-rt-14-dev, then re-run configure)" >&2; \
	  exit 1; \
	fi
	@$(MAKE) $(AM_MAKEFLAGS) --no-print-directory fuzz-targets
	@FUZZ_SECONDS=$(FUZZ_SECONDS) $(SHELL) $(srcdir)/tests/fuzz/run.sh \
	  $(srcdir)/tests/fuzz tests/tmp/fuzz $(FUZZ_TARGETS)

.PHONY: fuzz-targets fuzz-check
