# tests/imgtool.mk: imgtool tests (appended to TESTS).
# Each script shows one concern of issue 3; all of them exercise our
# binary, so all are repeated under ASan+UBSan (SANITIZE_TESTS).
IMGTOOL_TESTS = \
	tests/test_imgtool_01.sh \
	tests/test_imgtool_02.sh \
	tests/test_imgtool_03.sh \
	tests/test_imgtool_04.sh \
	tests/test_imgtool_05.sh \
	tests/test_imgtool_06.sh \
	tests/test_imgtool_07.sh \
	tests/test_imgtool_08.sh \
	tests/test_imgtool_09_build_exclude.sh \
	tests/test_imgtool_10_fstab_warning.sh \
	tests/test_imgtool_11_mac_ids.sh \
	tests/test_imgtool_12_squashfs.sh \
	tests/test_imgtool_13_state_template.sh

TESTS += $(IMGTOOL_TESTS)
SANITIZE_TESTS += $(IMGTOOL_TESTS)
EXTRA_DIST += $(IMGTOOL_TESTS)
