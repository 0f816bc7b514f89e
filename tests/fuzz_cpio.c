/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzz target: imgtool's listing of gzip'd newc cpio archives (cpio_list
 * in imgtool/cpio.c), which "imgtool initrd --list" and the tests use to
 * look into an initrd.
 *
 * The input is the archive file: gzip'd, or plain (zlib reads a file
 * without a gzip header as it is, so plain archives let the fuzzer work
 * on the cpio headers directly).
 */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "imgtool.h"

static int memfd = -1;
static char path[64];
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  memfd = memfd_create("initrd.gz", MFD_CLOEXEC);
  devnull = fopen("/dev/null", "we");
  if (memfd < 0 || !devnull) {
    perror("fuzz_cpio");
    abort();
  }
  snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (ftruncate(memfd, 0) < 0 ||
      (size && pwrite(memfd, data, size, 0) != (ssize_t)size)) {
    perror("fuzz_cpio: memfd");
    abort();
  }
  (void)cpio_list(path, devnull);
  return 0;
}
