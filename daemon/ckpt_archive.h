/* ckpt_archive.h - a checkpoint directory as one blob, for a shared (PostgreSQL) store: the files of
 * "<state>/jobs/<id>/ckpt-<step>/" packed into a store blob when the checkpoint is written, and unpacked into the
 * same place on whichever daemon resumes the job, so a job requeued after a daemon died resumes on another.
 * Format: "finetuned-checkpoint 1\n", then per file "<name> <size>\n" and the bytes; names are plain file names.
 * Not for: what the files mean (compute/train.c), or the SQLite store (whose checkpoints stay directories). */
#pragma once

#include "store/store.h"

/* Pack the regular files of dir into a committed blob; *ret_sha its digest. Streams, never whole in memory. */
int ckpt_archive_pack(struct store *s, const char *dir, char ret_sha[STORE_SHA256_HEX], struct ft_error *err);
/* Unpack blob sha into dir (created; its parent must exist) unless dir already exists. Refuses names with '/' or
 * that start with '.', and more than 64 files. */
int ckpt_archive_unpack(struct store *s, const char *sha, const char *dir, struct ft_error *err);
