/* One frame in or out of a plain socket with a deadline (frame_fd.h). */
#include "proto/frame_fd.h"

#include "common/clock.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* Waits until fd is ready for `events` or the deadline passes. 0, DAIS_ETIMEOUT, DAIS_EIO.
 * POLLERR / POLLHUP count as ready: the next recv/send reports what happened. */
static int wait_ready(int fd, short events, uint64_t deadline_ns, dais_err *err)
{
    for (;;) {
        int ms = -1;
        if (deadline_ns != 0) {
            uint64_t now = dais_now_ns();
            if (now >= deadline_ns) return dais_err_set(err, DAIS_ETIMEOUT, "timed out");
            uint64_t left = (deadline_ns - now + 999999) / 1000000;
            ms = left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        int n = poll(&p, 1, ms);
        if (n > 0) return 0;
        if (n < 0 && errno != EINTR)
            return dais_err_set(err, DAIS_EIO, "poll: %s", strerror(errno));
    }
}

/* Reads exactly len bytes; `what` names the part for error messages. */
static int recv_exact(int fd, uint8_t *buf, size_t len, uint64_t deadline_ns, const char *what,
                      dais_err *err)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = recv(fd, buf + done, len - done, MSG_DONTWAIT);
        if (r > 0) {
            done += (size_t)r;
            continue;
        }
        if (r == 0)
            return done == 0 && strcmp(what, "a frame header") == 0
                       ? dais_err_set(err, DAIS_ECLOSED, "connection closed")
                       : dais_err_set(err, DAIS_ECLOSED, "connection closed inside %s", what);
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return dais_err_set(err, errno == ECONNRESET ? DAIS_ECLOSED : DAIS_EIO,
                                "receiving %s: %s", what, strerror(errno));
        int rc = wait_ready(fd, POLLIN, deadline_ns, err);
        if (rc == DAIS_ETIMEOUT)
            return dais_err_set(err, rc, "timed out waiting for %s (%zu of %zu bytes)", what, done,
                                len);
        if (rc != 0) return rc;
    }
    return 0;
}

int dais_frame_fd_read(int fd, const dais_frame_limits *lim, uint64_t deadline_ns, dais_msg **out,
                       dais_err *err)
{
    *out = NULL;
    uint8_t hdr[DAIS_FRAME_HEADER_LEN];
    int rc = recv_exact(fd, hdr, sizeof(hdr), deadline_ns, "a frame header", err);
    if (rc != 0) return rc;
    dais_frame_header h;
    if ((rc = dais_frame_header_parse(hdr, lim, &h, err)) != 0) return rc;
    char *json = malloc(h.json_len);
    if (json == NULL) return dais_err_set(err, DAIS_ENOMEM, "no memory for a frame envelope");
    rc = recv_exact(fd, (uint8_t *)json, h.json_len, deadline_ns, "a frame envelope", err);
    dais_msg *m = NULL;
    if (rc == 0) rc = dais_envelope_parse(json, h.json_len, &m, err);
    free(json);
    if (rc != 0) return rc;
    if (h.bin_len > 0) {
        uint8_t *b = malloc(h.bin_len);
        if (b == NULL) {
            dais_msg_free(m);
            return dais_err_set(err, DAIS_ENOMEM, "no memory for a %u-byte binary payload",
                                h.bin_len);
        }
        rc = recv_exact(fd, b, h.bin_len, deadline_ns, "a binary payload", err);
        if (rc != 0) {
            free(b);
            dais_msg_free(m);
            return rc;
        }
        dais_msg_take_bin(m, b, h.bin_len);
    }
    *out = m;
    return 0;
}

int dais_frame_fd_write(int fd, const dais_msg *m, const void *bin, uint32_t bin_len,
                        const dais_frame_limits *lim, uint64_t deadline_ns, dais_err *err)
{
    dais_frame_limits tmp;
    if (lim == NULL) {
        dais_frame_limits_default(&tmp);
        lim = &tmp;
    }
    if (bin != NULL && m->bin_len != 0)
        return dais_err_set(err, DAIS_EINVAL, "two binary payloads for one frame");
    if (bin == NULL) {
        bin = m->bin;
        bin_len = m->bin_len;
    }
    char *json;
    size_t jl;
    int rc = dais_envelope_encode(m, &json, &jl);
    if (rc != 0) return dais_err_set(err, rc, "cannot encode the envelope");
    if (jl > lim->max_json || bin_len > lim->max_bin) {
        free(json);
        return dais_err_set(err, DAIS_ETOOBIG, "frame over the limits (%zu + %u bytes)", jl,
                            bin_len);
    }
    uint8_t hdr[DAIS_FRAME_HEADER_LEN];
    dais_frame_header_write(hdr, (uint32_t)jl, bin_len);
    struct iovec iov[3] = {{hdr, sizeof(hdr)}, {json, jl}, {(void *)bin, bin_len}};
    int first = 0, n_iov = bin_len > 0 ? 3 : 2;
    rc = 0;
    while (first < n_iov) {
        struct msghdr mh;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov + first;
        mh.msg_iovlen = (size_t)(n_iov - first);
        ssize_t w = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w >= 0) {
            size_t left = (size_t)w;
            while (first < n_iov && left >= iov[first].iov_len) {
                left -= iov[first].iov_len;
                first++;
            }
            if (first < n_iov) {
                iov[first].iov_base = (uint8_t *)iov[first].iov_base + left;
                iov[first].iov_len -= left;
            }
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            rc = dais_err_set(err, errno == EPIPE || errno == ECONNRESET ? DAIS_ECLOSED : DAIS_EIO,
                              "sending: %s", strerror(errno));
            break;
        }
        if ((rc = wait_ready(fd, POLLOUT, deadline_ns, err)) != 0) {
            if (rc == DAIS_ETIMEOUT)
                rc = dais_err_set(err, rc, "timed out: the peer does not take the bytes");
            break;
        }
    }
    free(json);
    return rc;
}
