# SPDX-License-Identifier: GPL-2.0-or-later
# tests/boot.mk: boot tests (appended to TESTS)
#
# test_boot_00_parse_cmdline runs the agent's command line parser and
# test_boot_12_keep_prune its keep-list prune on the host; the others
# boot Debian's kernel in QEMU/TCG with the agent as /init.  The layered
# tests run one scenario (tests/layered-SCENARIO.sh) on one base format.
BOOT_TESTS = \
	tests/test_boot_00_parse_cmdline.sh \
	tests/test_boot_01_dhcp_root.sh \
	tests/test_boot_02_debian_nbdroot.sh \
	tests/test_boot_03_two_guests.sh \
	tests/test_boot_04_server_kill9.sh \
	tests/test_boot_05_failure_messages.sh \
	tests/test_boot_06_address_flushed.sh \
	tests/test_boot_07_pxe.sh \
	tests/test_boot_08_pxe_writable_root.sh \
	tests/test_boot_09_layered_upgrade_ext4.sh \
	tests/test_boot_10_layered_kill9_squashfs.sh \
	tests/test_boot_11_failover.sh \
	tests/test_boot_12_keep_prune.sh \
	tests/test_boot_13_failover_cephfs.sh \
	tests/test_boot_14_layered_upgrade_squashfs.sh \
	tests/test_boot_15_layered_kill9_ext4.sh

TESTS += $(BOOT_TESTS)
EXTRA_DIST += tests/boot-functions.sh tests/layered-upgrade.sh tests/layered-kill9.sh \
	$(BOOT_TESTS)
