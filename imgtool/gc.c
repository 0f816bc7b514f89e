/* imgtool: gc (stub) */
#include <config.h>
#include "imgtool.h"
int
cmd_gc(int argc, char **argv)
{
  die_msg("cmd_gc: not implemented yet");
  return 1;
}
