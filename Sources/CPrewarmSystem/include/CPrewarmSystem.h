#ifndef PREWARM_CPREWARMSYSTEM_H
#define PREWARM_CPREWARMSYSTEM_H

#include <spawn.h>

/// Adds "close every descriptor from `lowest` up" to the spawn's file actions
/// (glibc's posix_spawn_file_actions_addclosefrom_np, which needs _GNU_SOURCE).
int prewarm_spawn_close_from(posix_spawn_file_actions_t *actions, int lowest);

/// Caps glibc's malloc arenas (mallopt M_ARENA_MAX, which Swift's Glibc module does not
/// import). Returns 1 on success, 0 on failure.
int prewarm_set_malloc_arena_max(int arenas);

/// Names the calling thread for the kernel (pthread_setname_np, which needs _GNU_SOURCE);
/// the name is cut to 15 bytes. Returns 0 on success.
int prewarm_set_thread_name(const char *name);

#endif
