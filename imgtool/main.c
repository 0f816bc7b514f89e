/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool: command dispatch.
 *
 *   imgtool build   TREE (-o IMAGE | --store DIR --name NAME)   build.c
 *                   [--format ext4|squashfs]                     squashfs.c
 *   imgtool state-template -o IMAGE [--size SIZE]                template.c
 *   imgtool initrd  -o FILE.gz [...] | --list FILE               initrd.c
 *   imgtool info    IMAGE | --store DIR [--name NAME]            info.c
 *   imgtool verify  --store DIR [--name NAME]                    info.c
 *   imgtool gc      --store DIR --overlays DIR [--keep N]        gc.c
 *   imgtool commit  --store DIR --name NAME --overlay PREFIX     commit.c
 *   imgtool upgrade-report --store DIR --name NAME               upgrade.c
 *                   --overlays DIR --state-export STATE          state.c
 *   imgtool rollback --store DIR NAME VERSION                    rollback.c
 *   imgtool sync    --from STORE --to STORE [--name NAME]        sync.c
 *   imgtool check-overlay [--salvage NEW] OVERLAY               check-overlay.c
 *   imgtool pxe     --server ADDR --export NAME ... -o DIR       pxe.c
 */
#include <config.h>

#include <stdio.h>
#include <string.h>

#include <ext2fs/ext2_err.h>

#include "imgtool.h"

static const struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} commands[] = {
  { "build", cmd_build, "build an ext4 or squashfs image from a tree" },
  { "state-template", cmd_state_template,
    "write the blank ext4 a layered client's state disk starts from" },
  { "initrd", cmd_initrd, "pack the initramfs: agent + kernel modules" },
  { "info", cmd_info, "show an image or the versions of a store" },
  { "verify", cmd_verify, "check the checksums of a store's versions" },
  { "gc", cmd_gc, "remove versions neither current nor used by overlays" },
  { "commit", cmd_commit, "fold a client's overlay into a new version" },
  { "upgrade-report", cmd_upgrade_report,
    "list clients' files that hide changes of a new base" },
  { "rollback", cmd_rollback, "point current back at an earlier version" },
  { "sync", cmd_sync, "copy a store's versions to another server's store" },
  { "check-overlay", cmd_check_overlay,
    "say what is wrong with an overlay; salvage its valid part" },
  { "pxe", cmd_pxe, "write PXELINUX, GRUB, iPXE and DHCP boot configs" },
};

static void
usage(FILE *f)
{
  fputs("usage: imgtool COMMAND [OPTIONS]   (imgtool COMMAND --help)\n", f);
  for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
    fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
}

int
main(int argc, char **argv)
{
  log_open("imgtool", true);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("imgtool (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
    return 0;
  }
  /* libext2fs's errors in words ("Attempt to read block from filesystem
   * resulted in short read"), not "Unknown code ext2 36". */
  initialize_ext2_error_table();
  for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
    if (strcmp(argv[1], commands[i].name) == 0) {
      int rc = commands[i].run(argc - 1, argv + 1);
      fflush(stdout);
      tmpfile_cleanup();
      return rc;
    }
  }
  log_err("unknown command '%s'", argv[1]);
  usage(stderr);
  return 2;
}
