# SPDX-License-Identifier: GPL-2.0-or-later
# tests/imgtool.mk: imgtool tests (appended to TESTS).
# Each script shows one concern of imgtool; all of them exercise our
# binary, so all are repeated under ASan+UBSan (SANITIZE_TESTS).
IMGTOOL_TESTS = \
	tests/test_imgtool_01_build_reproducible.sh \
	tests/test_imgtool_02_build_sizing.sh \
	tests/test_imgtool_03_store.sh \
	tests/test_imgtool_04_gc.sh \
	tests/test_imgtool_05_commit.sh \
	tests/test_imgtool_06_initrd.sh \
	tests/test_imgtool_07_initrd_compressed_modules.sh \
	tests/test_imgtool_08_pxe.sh \
	tests/test_imgtool_09_build_exclude.sh \
	tests/test_imgtool_10_fstab_warning.sh \
	tests/test_imgtool_11_mac_ids.sh \
	tests/test_imgtool_12_squashfs.sh \
	tests/test_imgtool_13_state_template.sh \
	tests/test_imgtool_14_upgrade_report.sh \
	tests/test_imgtool_15_commit_layered.sh \
	tests/test_imgtool_16_check_overlay.sh \
	tests/test_imgtool_17_sync.sh \
	tests/test_imgtool_18_squashfs_order.sh \
	tests/test_imgtool_19_squashfs_block_size.sh

TESTS += $(IMGTOOL_TESTS)
SANITIZE_TESTS += $(IMGTOOL_TESTS)
EXTRA_DIST += $(IMGTOOL_TESTS) tests/layered-state.sh
