# tests/server.mk: nbdsrv integration tests (appended to TESTS).
# Each script shows one concern of issue 2; all of them exercise our
# binary, so all but the memory test are repeated under ASan+UBSan.
SERVER_TESTS = \
	tests/test_server_01.sh \
	tests/test_server_02.sh \
	tests/test_server_03.sh \
	tests/test_server_04.sh \
	tests/test_server_05.sh \
	tests/test_server_06.sh \
	tests/test_server_07.sh \
	tests/test_server_08.sh \
	tests/test_server_09.sh \
	tests/test_server_10.sh \
	tests/test_server_11.sh \
	tests/test_server_12.sh \
	tests/test_server_13.sh \
	tests/test_server_14.sh \
	tests/test_server_15.sh \
	tests/test_server_16.sh \
	tests/test_server_17.sh \
	tests/test_server_18.sh \
	tests/test_server_19.sh \
	tests/test_server_20.sh \
	tests/test_server_22.sh \
	tests/test_server_23.sh \
	tests/test_server_24.sh \
	tests/test_server_25.sh \
	tests/test_server_26.sh \
	tests/test_server_27.sh \
	tests/test_server_28.sh \
	tests/test_server_29.sh \
	tests/test_server_30.sh \
	tests/test_server_31.sh \
	tests/test_server_32.sh \
	tests/test_server_33.sh \
	tests/test_server_34.sh \
	tests/test_server_35_mac_ids.sh \
	tests/test_server_37_visibility.sh \
	tests/test_server_38_check_config.sh \
	tests/test_server_39_config_keys.sh \
	tests/test_server_43_compaction.sh \
	tests/test_server_44_restart_port.sh \
	tests/test_server_45_shared_readonly.sh \
	tests/test_server_46_failover_lock.sh

# Memory figures mean nothing under a sanitizer's allocator: not repeated.
SERVER_MEMORY_TESTS = tests/test_server_21.sh

TESTS += $(SERVER_TESTS) $(SERVER_MEMORY_TESTS)
SANITIZE_TESTS += $(SERVER_TESTS)
EXTRA_DIST += $(SERVER_TESTS) $(SERVER_MEMORY_TESTS) tests/server-lib.py \
	tests/failover-functions.sh tests/ceph-functions.sh \
	tests/valgrind-nbdsrv.sh

# Power loss (issue 20): tests/powerloss/recfs records, below nbdsrv, every
# write and sync it makes to its overlays; crashgen.py builds from that
# record the states a power loss may leave and checks each one.  Not
# repeated under the sanitizers: it restarts nbdsrv hundreds of times.
POWERLOSS_TESTS = \
	tests/test_server_40_power_loss.sh \
	tests/test_server_41_recording_fs.sh
if HAVE_FUSE3
check_PROGRAMS += tests/powerloss/recfs
tests_powerloss_recfs_SOURCES = tests/powerloss/recfs.c
tests_powerloss_recfs_CFLAGS = $(AM_CFLAGS) $(FUSE3_CFLAGS)
tests_powerloss_recfs_LDADD = $(FUSE3_LIBS)
endif
TESTS += $(POWERLOSS_TESTS)
EXTRA_DIST += $(POWERLOSS_TESTS) tests/powerloss/recfs.c \
	tests/powerloss/powerloss-functions.sh tests/powerloss/driver.py \
	tests/powerloss/crashgen.py
