# tests/boot.mk: boot tests (appended to TESTS)
#
# test_boot_00 runs the agent's command line parser on the host; the
# others boot Debian's kernel in QEMU/TCG with the agent as /init.
TESTS += \
	tests/test_boot_00.sh \
	tests/test_boot_01.sh \
	tests/test_boot_02.sh \
	tests/test_boot_03.sh \
	tests/test_boot_04.sh \
	tests/test_boot_05.sh \
	tests/test_boot_06.sh \
	tests/test_boot_07.sh \
	tests/test_boot_08_pxe_writable_root.sh \
	tests/test_boot_09_layered_ext4.sh \
	tests/test_boot_10_layered_squashfs.sh
EXTRA_DIST += \
	tests/boot-functions.sh \
	tests/test_boot_00.sh \
	tests/test_boot_01.sh \
	tests/test_boot_02.sh \
	tests/test_boot_03.sh \
	tests/test_boot_04.sh \
	tests/test_boot_05.sh \
	tests/test_boot_06.sh \
	tests/test_boot_07.sh \
	tests/test_boot_08_pxe_writable_root.sh \
	tests/test_boot_09_layered_ext4.sh \
	tests/test_boot_10_layered_squashfs.sh
