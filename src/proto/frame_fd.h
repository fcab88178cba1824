/*
 * Frames over a plain socket, for threads that run no event loop: the master's model store
 * (port 8890, master/modelstore.h) and the worker's model download before its loop starts
 * (worker/modelsync.h). One call reads or writes exactly one frame and never waits past its
 * deadline: every wait is a poll(2) bounded by the time left, every transfer a MSG_DONTWAIT
 * call, so the socket may be blocking or not. The header's limits are checked before anything
 * after it is read (proto/frame.h). Any thread, on its own socket.
 */
#ifndef DAIS_PROTO_FRAME_FD_H
#define DAIS_PROTO_FRAME_FD_H

#include "common/error.h"
#include "proto/envelope.h"
#include "proto/frame.h"

#include <stdint.h>

/* Reads one frame from `fd` before `deadline_ns` (dais_now_ns() clock; 0 = no deadline).
 * On 0, *out is an owned message whose binary payload was read straight into its own buffer.
 * Errors (err says which): DAIS_ECLOSED (the peer closed, at a frame boundary or inside one),
 * DAIS_ETIMEOUT, DAIS_EIO (a socket error), DAIS_EPROTO / DAIS_ETOOBIG / DAIS_EFORMAT (a
 * malformed frame or envelope: close the connection), DAIS_ENOMEM. */
int dais_frame_fd_read(int fd, const dais_frame_limits *lim, uint64_t deadline_ns, dais_msg **out,
                       dais_err *err);

/* Writes the frame of `m` to `fd` before `deadline_ns`. `bin` (borrowed) is the binary payload
 * when not NULL — then m must carry none — so a caller can send bytes it holds (a file chunk)
 * without copying them into the message; else m's own payload is sent. 0, DAIS_ETIMEOUT (the
 * peer did not take the bytes in time), DAIS_EIO / DAIS_ECLOSED, DAIS_ETOOBIG (over `lim`;
 * NULL = the defaults), DAIS_EINVAL, DAIS_ENOMEM. */
int dais_frame_fd_write(int fd, const dais_msg *m, const void *bin, uint32_t bin_len,
                        const dais_frame_limits *lim, uint64_t deadline_ns, dais_err *err);

#endif
