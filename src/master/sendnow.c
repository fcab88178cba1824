/* Writing queued output at once (sendnow.h). */
#include "master/sendnow.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

bool dais_send_now(struct evbuffer *out, evutil_socket_t fd)
{
    while (evbuffer_get_length(out) > 0) {
        struct evbuffer_iovec v[16];
        struct iovec iov[16];
        int n = evbuffer_peek(out, -1, NULL, v, 16);
        if (n > 16) n = 16;
        size_t total = 0;
        for (int i = 0; i < n; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
            total += v[i].iov_len;
        }
        struct msghdr mh;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)n;
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        /* A bufferevent freezes the front of its output buffer; libevent's own write thaws
         * it the same way around the drain. */
        evbuffer_unfreeze(out, 1);
        evbuffer_drain(out, (size_t)w);
        evbuffer_freeze(out, 1);
        if ((size_t)w < total) break; /* the socket is full */
    }
    return true;
}
