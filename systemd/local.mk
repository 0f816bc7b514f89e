# SPDX-License-Identifier: GPL-2.0-or-later
# systemd/: the unit of nbdsrv, installed to systemdsystemunitdir (see
# configure --with-systemdsystemunitdir).  Its paths are filled in by make,
# not by configure, so that they are fully expanded and follow a
# "make prefix=..." as everything else does.
EXTRA_DIST += systemd/nbdsrv.service.in
CLEANFILES += systemd/nbdsrv.service
if INSTALL_SYSTEMD_UNIT
systemdsystemunit_DATA = systemd/nbdsrv.service
endif

systemd/nbdsrv.service: $(srcdir)/systemd/nbdsrv.service.in Makefile
	@$(MKDIR_P) systemd
	$(AM_V_GEN)sed -e 's|@sbindir[@]|$(sbindir)|g' \
	  -e 's|@sysconfdir[@]|$(sysconfdir)|g' \
	  $(srcdir)/systemd/nbdsrv.service.in >$@.tmp && mv $@.tmp $@
