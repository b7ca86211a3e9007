#ifndef PREWARM_CHIREDIS_SHIM_H
#define PREWARM_CHIREDIS_SHIM_H

#include <hiredis/hiredis.h>

/* The reply-type and status macros are not imported as Swift constants everywhere. */
static const int prewarm_redis_ok = REDIS_OK;
static const int prewarm_reply_string = REDIS_REPLY_STRING;
static const int prewarm_reply_array = REDIS_REPLY_ARRAY;
static const int prewarm_reply_integer = REDIS_REPLY_INTEGER;
static const int prewarm_reply_nil = REDIS_REPLY_NIL;
static const int prewarm_reply_status = REDIS_REPLY_STATUS;
static const int prewarm_reply_error = REDIS_REPLY_ERROR;

#endif
