# SPDX-License-Identifier: GPL-2.0-or-later
# initrd: build fragment, included from the top-level Makefile.am
#
# The agent is /init of the client's initramfs: a static binary built with
# musl (MUSL_CC, found by configure), not with $(CC), so it has its own
# rule.  It is installed to pkglibexecdir, where imgtool initrd finds it.
initrd_agent_sources = \
	$(srcdir)/initrd/main.c $(srcdir)/initrd/console.c \
	$(srcdir)/initrd/cmdline.c \
	$(srcdir)/initrd/modules.c $(srcdir)/initrd/net.c \
	$(srcdir)/initrd/dhcp.c $(srcdir)/initrd/nbd-handshake.c \
	$(srcdir)/initrd/nbd-netlink.c $(srcdir)/initrd/switch-root.c \
	$(srcdir)/initrd/supervisor.c $(srcdir)/initrd/layered.c \
	$(srcdir)/initrd/keep.c $(srcdir)/initrd/servers.c \
	$(srcdir)/common/io.c $(srcdir)/common/clock.c
initrd_agent_headers = $(srcdir)/initrd/agent.h $(srcdir)/initrd/uapi.h \
	$(srcdir)/common/nbd-protocol.h $(srcdir)/common/io.h \
	$(srcdir)/common/clock.h $(srcdir)/common/util.h
INITRD_AGENT_CFLAGS = -static -Os -s -std=gnu11 -D_GNU_SOURCE \
	-ffunction-sections -fdata-sections -Wl,--gc-sections \
	$(WARN_CFLAGS) -I$(top_srcdir)/common

pkglibexec_SCRIPTS = initrd/nbdroot-agent
EXTRA_DIST += initrd/main.c initrd/console.c initrd/cmdline.c initrd/modules.c initrd/net.c \
	initrd/dhcp.c initrd/nbd-handshake.c initrd/nbd-netlink.c \
	initrd/switch-root.c initrd/supervisor.c initrd/layered.c initrd/keep.c \
	initrd/servers.c initrd/agent.h initrd/uapi.h
CLEANFILES += initrd/nbdroot-agent

initrd/nbdroot-agent: $(initrd_agent_sources) $(initrd_agent_headers)
	@$(MKDIR_P) initrd
	$(AM_V_CCLD)$(MUSL_CC) $(INITRD_AGENT_CFLAGS) -o $@ $(initrd_agent_sources)
