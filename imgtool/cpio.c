/* imgtool: cpio (stub) */
#include <config.h>
#include "imgtool.h"
extern int imgtool_placeholder;
