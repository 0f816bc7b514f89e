/* imgtool: initrd (stub) */
#include <config.h>
#include "imgtool.h"
int
cmd_initrd(int argc, char **argv)
{
  die_msg("cmd_initrd: not implemented yet");
  return 1;
}
