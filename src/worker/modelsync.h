/*
 * Pulling the model from the master: the worker's side of port 8890 (docs/protocol.md, "Model
 * synchronisation"; docs/operations.md, "Workers without the model file").
 *
 * dais_modelsync_pull runs before the model is loaded, on the main thread, and blocks until
 * the file is on disk and is the master's file, byte for byte:
 *
 *   dest = --model when given, else <--model-cache>/<NAME>.gguf (<NAME>.layers-A-B.gguf with
 *   --layers A:B); bytes arrive in dest.part. With --layers the request asks for the shard file
 *   of those layers (`layers` [A, B]), which the master makes once from its file; a range that
 *   is the whole model gets the whole file.
 *   1. dest exists: ask from offset = its size. The master's first answer carries its file's
 *      size and SHA-256; the same size and the same hash of ours mean the cached copy is the
 *      master's file: nothing is downloaded. Otherwise the stale copy is deleted.
 *   2. download: ask from offset = the size of dest.part (a download cut short resumes
 *      there), write each chunk at its offset, hash as it arrives (the part already on disk is
 *      hashed first), and at the end compare with the master's SHA-256: equal → fsync, rename
 *      to dest (atomic); different → delete dest.part and download once more from 0, then
 *      give up.
 *
 * Unreachable master (DNS, refused, timeouts), busy, a connection lost mid-way: retried with
 * the worker's backoff (--retry-base, --retry-max) for as long as it takes, resuming from
 * dest.part. Permanent refusals end the pull with an error that says why: a wrong cluster
 * token, an unknown model (with the names the master serves), a second hash mismatch, a full
 * disk. A lock file (dest.lock, flock) makes workers sharing one cache pull one at a time;
 * the later ones then find the file in place.
 */
#ifndef DAIS_WORKER_MODELSYNC_H
#define DAIS_WORKER_MODELSYNC_H

#include "common/error.h"
#include "worker/config.h"

#include <stddef.h>

/* Makes sure cfg->pull_model is on disk as the master serves it and writes its path into
 * path[cap]. 0, or a DAIS_E… code with err saying why (DAIS_EAUTH wrong token, DAIS_ENOTFOUND
 * unknown model, DAIS_EFORMAT hash mismatch twice, DAIS_EIO disk full or unwritable, …).
 * Blocking; main thread, before the worker's loop exists (signals keep their default action,
 * so SIGTERM ends a download at once; the .part file is kept for the next start). */
int dais_modelsync_pull(const dais_worker_config *cfg, char *path, size_t cap, dais_err *err);

#endif
