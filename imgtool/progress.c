/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool build: the progress line, the same for every image format.
 *
 * On a terminal, one line rewritten every second; in a log (--progress
 * with stderr not a terminal), a line every 5 seconds.  Small trees stay
 * quiet unless --progress asks for the final line.
 */
#include <config.h>

#include <string.h>
#include <unistd.h>

#include "imgtool.h"

void
build_progress_init(struct build_progress *p, const struct build_opts *o,
                    const struct tree *t)
{
  memset(p, 0, sizeof *p);
  p->forced = o->progress;
  p->on = !o->quiet && (o->progress || isatty(2));
  p->tty = isatty(2);
  p->t0 = p->last = now_ms();
  p->total_inodes = t->ninodes;
  p->total_bytes = t->file_bytes;
}

void
build_progress_show(struct build_progress *p, bool final)
{
  uint64_t t, every = p->tty ? 1000 : 5000;

  if (!p->on)
    return;
  t = now_ms();
  if (!final && (t - p->last < every || t - p->t0 < every))
    return;
  if (final && p->last == p->t0 && !p->forced)
    return;
  p->last = t;
  fprintf(stderr, "%simgtool: build: %llu/%llu inodes, %llu/%llu MiB%s",
          p->tty ? "\r" : "", (unsigned long long)p->done_inodes,
          (unsigned long long)p->total_inodes, (unsigned long long)(p->done_bytes >> 20),
          (unsigned long long)(p->total_bytes >> 20), p->tty && !final ? "" : "\n");
}
