/* imgtool: commit (stub) */
#include <config.h>
#include "imgtool.h"
int
cmd_commit(int argc, char **argv)
{
  die_msg("cmd_commit: not implemented yet");
  return 1;
}
