/*
 * Writing a bufferevent's queued output from the caller's stack, without waiting a loop turn
 * for EV_WRITE (master/httpd.c and master/cluster.c: an epoll_ctl to add the event, an
 * epoll_wait, a writev and an epoll_ctl to remove it, per reply or frame, otherwise).
 */
#ifndef DAIS_MASTER_SENDNOW_H
#define DAIS_MASTER_SENDNOW_H

#include <event2/buffer.h>
#include <event2/util.h>

#include <stdbool.h>

/* Writes as much of `out` (a bufferevent's output buffer) as the socket `fd` takes now:
 * non-blocking, and without SIGPIPE for a peer that is gone. What is written is drained. Returns
 * false on a socket error other than "try again" (the data then stays queued). Loop thread. */
bool dais_send_now(struct evbuffer *out, evutil_socket_t fd);

#endif
