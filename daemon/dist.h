/* dist.h - the process's MPI runtime for data-parallel training: whether this
 * process is one rank of an `mpirun` job, MPI_Init/MPI_Finalize, and the
 * collectives compute/train's struct train_collective asks for, each guarded
 * by a watchdog so that a rank that died or hangs ends the job with an error
 * instead of a hang (MPI_ERRORS_RETURN turns MPI failures into errors). The
 * watchdog also ends the rank when its launcher (its parent) is gone.
 *
 * Not for: the training itself (compute/train.c splits batches and calls the
 * collectives), launching mpirun (daemon/launcher.c), or anything when the
 * build has no MPI (-Dmpi=disabled): then dist_launched() is false and
 * dist_open() fails with a message that says so.
 */
#pragma once

#include <stdbool.h>

#include "common/common.h"
#include "compute/train.h"

#define DIST_TIMEOUT_DEFAULT 600.0 /* seconds one collective may wait for the other ranks */

struct dist;

/* Whether this process was started by an MPI launcher (Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE). */
bool dist_launched(void);
/* Whether the build can train over MPI (-Dmpi). */
bool dist_available(void);

/* MPI_Init and the watchdog thread: a collective that waits longer than timeout seconds prints an error naming
 * the rank and ends the process (exit status 1; mpirun then ends the other ranks). *ret is heap-allocated; the
 * collective it fills in (dist_collective) is valid while it lives. */
int dist_open(double timeout, struct dist **ret, struct ft_error *err);
/* MPI_Finalize; NULL is a no-op. */
void dist_close(struct dist *d);
const struct train_collective *dist_collective(struct dist *d);
