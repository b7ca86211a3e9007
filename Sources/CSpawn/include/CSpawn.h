#ifndef PREWARM_CSPAWN_H
#define PREWARM_CSPAWN_H

#include <spawn.h>

/// Adds "close every descriptor from `lowest` up" to the spawn's file actions
/// (glibc's posix_spawn_file_actions_addclosefrom_np, which needs _GNU_SOURCE).
int prewarm_spawn_close_from(posix_spawn_file_actions_t *actions, int lowest);

#endif
