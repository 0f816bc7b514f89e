/* imgtool: info (stub) */
#include <config.h>
#include "imgtool.h"
int
cmd_info(int argc, char **argv)
{
  die_msg("cmd_info: not implemented yet");
  return 1;
}
int
cmd_verify(int argc, char **argv)
{
  die_msg("cmd_verify: not implemented yet");
  return 1;
}
