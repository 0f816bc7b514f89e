/* SPDX-License-Identifier: GPL-2.0-or-later */
/* imgtool state-template: the blank ext4 image a layered client's state
 * disk starts from.
 *
 * In layered mode a client's root is overlayfs over the shared base; its
 * upper layer lives on a per-client "state" export, and each of those
 * starts as a copy (an overlay) of this template.  The template is made
 * by the ext4 builder itself (build.c), from a tree with nothing but its
 * root directory, so it is the same filesystem a build makes (lost+found,
 * journal, checksums, no lazy-init writes later) and just as
 * reproducible: the UUID and hash seed come from the options, every
 * timestamp is SOURCE_DATE_EPOCH or, unset, 1 (1970-01-01T00:00:01Z).
 * The file is sparse: only the filesystem's metadata is written, so an
 * 8 GiB template takes well under a MiB on disk.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgtool.h"

#define TEMPLATE_DEFAULT_SIZE (8ull << 30)
#define BYTES_PER_INODE 16384 /* mke2fs's default density */

struct template_args {
  struct build_opts o;
  const char *out;
  bool force;
};

static void
template_usage(FILE *f)
{
  fputs("usage: imgtool state-template -o IMAGE [--size SIZE] [--inodes N]\n"
        "         [--label LABEL] [--force]\n",
        f);
}

/* -1 to go on, else the exit status. */
static int
parse_template_args(int argc, char **argv, struct template_args *a)
{
  static const struct option opts[] = {
    { "output", required_argument, NULL, 'o' },
    { "size", required_argument, NULL, 's' },
    { "inodes", required_argument, NULL, 'i' },
    { "label", required_argument, NULL, 'L' },
    { "force", no_argument, NULL, 'f' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  char *end;
  int c;

  memset(a, 0, sizeof *a);
  a->o.size = TEMPLATE_DEFAULT_SIZE;
  a->o.quiet = true;
  while ((c = getopt_long(argc, argv, "o:s:fh", opts, NULL)) != -1) {
    switch (c) {
      case 'o': a->out = optarg; break;
      case 'f': a->force = true; break;
      case 's':
        if (parse_size(optarg, &a->o.size) < 0 || a->o.size < (16u << 20)) {
          log_err("--size '%s': give a size of at least 16M, e.g. 8G", optarg);
          return 2;
        }
        break;
      case 'i':
        a->o.inodes = strtoull(optarg, &end, 10);
        if (*end || !a->o.inodes || a->o.inodes > 0xffffffffull) {
          log_err("--inodes '%s': give a positive number", optarg);
          return 2;
        }
        break;
      case 'L':
        if (strlen(optarg) > 16) {
          log_err("--label '%s' is longer than 16 bytes", optarg);
          return 2;
        }
        a->o.label = optarg;
        break;
      case 'h': template_usage(stdout); return 0;
      default: template_usage(stderr); return 2;
    }
  }
  if (optind != argc || !a->out) {
    log_err("state-template needs -o IMAGE and no other argument");
    template_usage(stderr);
    return 2;
  }
  if (!a->o.inodes)
    a->o.inodes = a->o.size / BYTES_PER_INODE;
  a->o.output = a->o.tree = a->out;
  return -1;
}

/* A tree of one empty root directory (root's, 0755, at time t), whose
 * digest (what the UUID and hash seed come from) is that of the options. */
static void
blank_tree(const struct build_opts *o, int64_t t, struct tree *tree)
{
  static const char tag[] = "nbdroot state template";
  struct node *root = xcalloc(1, sizeof *root);
  struct sha256_ctx s;

  memset(tree, 0, sizeof *tree);
  root->name = xstrdup("");
  root->path = xstrdup(o->output);
  root->st.st_mode = S_IFDIR | 0755;
  root->st.st_nlink = 2;
  root->st.st_mtim.tv_sec = t;
  root->hl_count = 1;
  tree->root = root;
  tree->nnodes = tree->ninodes = 1;
  tree->meta_blocks = 1;
  sha256_init(&s);
  sha256_update(&s, sizeof tag, (const uint8_t *)tag);
  sha256_u64(&s, o->size);
  sha256_u64(&s, o->inodes);
  sha256_u64(&s, (uint64_t)t);
  if (o->label)
    sha256_update(&s, strlen(o->label) + 1, (const uint8_t *)o->label);
  sha256_digest(&s, sizeof tree->digest, tree->digest);
}

/* The template into the new file of; timestamps SOURCE_DATE_EPOCH or,
 * without it, 1: libext2fs takes a time of 0 for "now" (the superblock's
 * write time would be the clock's). */
static int
write_template(const struct template_args *a, struct outfile *of)
{
  struct build_clock clk = { .clamp = 1, .clamp_set = true };
  struct tree t;
  int r = source_date_epoch(&clk.clamp);

  if (r < 0)
    return r;
  if (clk.clamp == 0)
    clk.clamp = 1;
  clk.now = clk.clamp;
  blank_tree(&a->o, clk.clamp, &t);
  r = build_ext4(&a->o, &t, &clk, of->fd, of->path);
  tree_free(&t);
  if (r == 0 && fsync(of->fd) < 0) {
    r = -errno;
    log_err("cannot write %s: %s", a->out, strerror(-r));
  }
  return r;
}

static int
run_template(const struct template_args *a)
{
  struct outfile of = { .fd = -1 };
  struct stat st;
  int r;

  if (!a->force && lstat(a->out, &st) == 0) {
    log_err("%s already exists: remove it or pass --force", a->out);
    return -EEXIST;
  }
  tmpfile_install_signals();
  r = outfile_create(a->out, 0644, &of);
  if (r < 0) {
    log_err("cannot create a file next to %s: %s", a->out, strerror(-r));
    return r;
  }
  r = write_template(a, &of);
  if (r == 0) {
    r = a->force ? outfile_install(&of, a->out) : outfile_link(&of, a->out);
    if (r < 0)
      log_err("cannot create %s: %s", a->out, strerror(-r));
  }
  if (r == 0) {
    fsync_dir_of(a->out);
    printf("%s\n", a->out);
  }
  outfile_close(&of);
  return r;
}

int
cmd_state_template(int argc, char **argv)
{
  struct template_args a;
  int rc = parse_template_args(argc, argv, &a);

  if (rc < 0)
    rc = run_template(&a) < 0 ? 1 : 0;
  return rc;
}
