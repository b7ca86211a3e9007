#ifndef PREWARM_CHIREDIS_SHIM_H
#define PREWARM_CHIREDIS_SHIM_H

#include <hiredis/hiredis.h>

#endif
