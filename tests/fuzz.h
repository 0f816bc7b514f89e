/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdroot fuzz targets: helpers more than one target needs. */
#ifndef NBDROOT_FUZZ_H
#define NBDROOT_FUZZ_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static int
fuzz_rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
  (void)st;
  (void)ftw;
  if (type == FTW_DP)
    rmdir(path);
  else
    unlink(path);
  return 0;
}

/* rm -rf path: the temporary trees a target makes for itself. */
static inline void
fuzz_rm_rf(const char *path)
{
  nftw(path, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
