#ifndef PREWARM_CLIBPQ_SHIM_H
#define PREWARM_CLIBPQ_SHIM_H

#include <libpq-fe.h>

/* PG_DIAG_* are character macros from postgres_ext.h; give them typed names. */
static const int prewarm_pg_diag_sqlstate = PG_DIAG_SQLSTATE;
static const int prewarm_pg_diag_message_primary = PG_DIAG_MESSAGE_PRIMARY;
static const int prewarm_pg_diag_message_detail = PG_DIAG_MESSAGE_DETAIL;
static const int prewarm_pg_diag_constraint_name = PG_DIAG_CONSTRAINT_NAME;
static const int prewarm_pg_diag_severity = PG_DIAG_SEVERITY_NONLOCALIZED;

#endif
