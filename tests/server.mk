# SPDX-License-Identifier: GPL-2.0-or-later
# tests/server.mk: nbdsrv integration tests (appended to TESTS).
# Each script shows one concern of the server; all of them exercise our
# binary, so all but the memory test are repeated under ASan+UBSan.
SERVER_TESTS = \
	tests/test_server_01_stock_clients.sh \
	tests/test_server_02_client_isolation.sh \
	tests/test_server_03_kill9_durability.sh \
	tests/test_server_04_sigterm_persistent.sh \
	tests/test_server_05_reset_on_boot.sh \
	tests/test_server_06_ephemeral.sh \
	tests/test_server_07_qemu_client.sh \
	tests/test_server_08_fio_verify.sh \
	tests/test_server_09_bad_handshake.sh \
	tests/test_server_10_bad_requests.sh \
	tests/test_server_11_reply_styles.sh \
	tests/test_server_12_trim_zero_space.sh \
	tests/test_server_13_many_in_flight.sh \
	tests/test_server_14_image_store.sh \
	tests/test_server_15_long_journal.sh \
	tests/test_server_16_multi_conn.sh \
	tests/test_server_17_reset_stale_boot.sh \
	tests/test_server_18_sigterm_under_load.sh \
	tests/test_server_19_large_reads_splice.sh \
	tests/test_server_20_config_file.sh \
	tests/test_server_22_limits.sh \
	tests/test_server_23_acl_names.sh \
	tests/test_server_24_crash_harness.sh \
	tests/test_server_25_overlay_fs_full.sh \
	tests/test_server_26_broken_off.sh \
	tests/test_server_27_load_2000.sh \
	tests/test_server_28_trace.sh \
	tests/test_server_29_ctl_readiness.sh \
	tests/test_server_30_reload.sh \
	tests/test_server_31_attach_thread.sh \
	tests/test_server_32_boot_replay.sh \
	tests/test_server_33_attach_sched.sh \
	tests/test_server_34_janitor_race.sh \
	tests/test_server_35_mac_ids.sh \
	tests/test_server_37_visibility.sh \
	tests/test_server_38_check_config.sh \
	tests/test_server_39_config_keys.sh \
	tests/test_server_43_compaction.sh \
	tests/test_server_44_restart_port.sh \
	tests/test_server_45_shared_readonly.sh \
	tests/test_server_46_failover_lock.sh \
	tests/test_server_56_memory_floods.sh \
	tests/test_server_47_short_block_status.sh \
	tests/test_server_48_identity.sh \
	tests/test_server_49_minting.sh \
	tests/test_server_50_refusals.sh \
	tests/test_server_51_small_limits.sh \
	tests/test_server_52_damaged_overlays.sh \
	tests/test_server_53_restart_journals.sh \
	tests/test_server_54_large_requests.sh \
	tests/test_server_55_base_by_content.sh \
	tests/test_server_57_link_rate_pacing.sh \
	tests/test_server_58_flush_skips_clean_data.sh \
	tests/test_server_42_cephfs.sh

# Memory figures mean nothing under a sanitizer's allocator: not repeated.
SERVER_MEMORY_TESTS = tests/test_server_21_memory_per_client.sh

TESTS += $(SERVER_TESTS) $(SERVER_MEMORY_TESTS)
SANITIZE_TESTS += $(SERVER_TESTS)
EXTRA_DIST += $(SERVER_TESTS) $(SERVER_MEMORY_TESTS) tests/server-lib.py \
	tests/failover-functions.sh tests/ceph-functions.sh \
	tests/valgrind-nbdsrv.sh

# Power loss: tests/powerloss/recfs records, below nbdsrv, every
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
