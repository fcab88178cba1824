/* Downloading the model from the master's sync port before the worker starts (modelsync.h). */
#include "worker/modelsync.h"
#include "engine/model.h"

#include "common/backoff.h"
#include "common/clock.h"
#include "common/log.h"
#include "proto/auth.h"
#include "proto/frame_fd.h"
#include "proto/messages.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How long the master may take to answer the request: it hashes a file on first use, which
 * for a large model on a slow disk takes minutes. Between chunks it is bounded much tighter. */
#define FIRST_ANSWER_MS   (10u * 60u * 1000u)
#define NEXT_CHUNK_MS     (60u * 1000u)
#define HASH_BUF          (1u << 20)
#define PROGRESS_EVERY_NS 2000000000ull
#define PATH_CAP          4200

enum outcome {
    PULL_DONE,  /* dest is the master's file */
    PULL_AGAIN, /* go on at once (next step, or a fresh download) */
    PULL_RETRY, /* transient: wait (backoff) and try again */
    PULL_FAIL,  /* permanent: err says why */
};

typedef struct pull {
    const dais_worker_config *cfg;
    char dest[PATH_CAP];
    char part[PATH_CAP + 8];
    char lock[PATH_CAP + 8];
    char port[8];
    bool dest_checked; /* dest was compared with the master's file (or is absent) */
    bool restart_part; /* the master's file is shorter than our .part: start from 0 */
    int hash_failures; /* downloads whose SHA-256 did not match */
    uint64_t progress; /* bytes received over all attempts (resets the backoff) */
} pull;

/* ---- small helpers ------------------------------------------------------------------------ */

static double mb(uint64_t b)
{
    return (double)b / 1e6;
}

/* mkdir -p of the directory part of `path`. */
static int mkdir_parents(const char *path, dais_err *err)
{
    char d[PATH_CAP];
    snprintf(d, sizeof(d), "%s", path);
    char *slash = strrchr(d, '/');
    if (slash == NULL || slash == d) return 0;
    *slash = '\0';
    for (char *p = d + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(d, 0755) != 0 && errno != EEXIST)
                return dais_err_set(err, DAIS_EIO, "cannot create the directory %s: %s", d,
                                    strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    return 0;
}

static void fsync_dir_of(const char *path)
{
    char d[PATH_CAP];
    snprintf(d, sizeof(d), "%s", path);
    char *slash = strrchr(d, '/');
    if (slash == NULL)
        snprintf(d, sizeof(d), ".");
    else if (slash == d)
        d[1] = '\0';
    else
        *slash = '\0';
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* An I/O error writing the model: ENOSPC / EDQUOT say "disk full" plainly. */
static int write_error(const char *what, const char *path, int e, dais_err *err)
{
    if (e == ENOSPC || e == EDQUOT)
        return dais_err_set(err, DAIS_EIO, "disk full: cannot %s %s: %s", what, path, strerror(e));
    return dais_err_set(err, DAIS_EIO, "cannot %s %s: %s", what, path, strerror(e));
}

/* Hashes the first `len` bytes of fd into md. */
static int hash_prefix(EVP_MD_CTX *md, int fd, uint64_t len, const char *path, dais_err *err)
{
    uint8_t *buf = malloc(HASH_BUF);
    if (buf == NULL) return dais_err_set(err, DAIS_ENOMEM, "no memory to hash %s", path);
    int rc = 0;
    for (uint64_t off = 0; off < len;) {
        size_t want = len - off < HASH_BUF ? (size_t)(len - off) : HASH_BUF;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            rc = dais_err_set(err, DAIS_EIO, "cannot read %s: %s", path,
                              r < 0 ? strerror(errno) : "shorter than expected");
            break;
        }
        if (EVP_DigestUpdate(md, buf, (size_t)r) != 1) {
            rc = dais_err_set(err, DAIS_EINTERNAL, "SHA-256 failed");
            break;
        }
        off += (uint64_t)r;
    }
    free(buf);
    return rc;
}

static int hash_final(EVP_MD_CTX *md, char out[65], dais_err *err)
{
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    if (EVP_DigestFinal_ex(md, dg, &dl) != 1 || dl != 32)
        return dais_err_set(err, DAIS_EINTERNAL, "SHA-256 failed");
    dais_hex_encode(dg, 32, out);
    return 0;
}

/* SHA-256 of a whole file. */
static int hash_file(const char *path, uint64_t size, char out[65], dais_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dais_err_set(err, DAIS_EIO, "cannot open %s: %s", path, strerror(errno));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1
                 ? dais_err_set(err, DAIS_ENOMEM, "no memory for SHA-256")
                 : hash_prefix(md, fd, size, path, err);
    if (rc == 0) rc = hash_final(md, out, err);
    EVP_MD_CTX_free(md);
    close(fd);
    return rc;
}

/* ---- talking to the master ---------------------------------------------------------------- */

/* Resolves the master's host (each attempt: its address may change) and connects to the sync
 * port, each address in turn. DAIS_EAGAIN with err saying why when none answers. */
static int connect_master(const pull *p, int *out, dais_err *err)
{
    const dais_worker_config *c = p->cfg;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int g = getaddrinfo(c->master_host, p->port, &hints, &res);
    if (g != 0)
        return dais_err_set(err, DAIS_EAGAIN, "cannot resolve %s: %s", c->master_host,
                            gai_strerror(g));
    int last = ECONNREFUSED;
    uint64_t wait_ns =
        (uint64_t)(c->register_timeout_ms > 0 ? c->register_timeout_ms : 10000) * 1000000ull;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT, .revents = 0};
            uint64_t deadline = dais_now_ns() + wait_ns;
            int n;
            do {
                uint64_t now = dais_now_ns();
                n = now >= deadline ? 0 : poll(&pf, 1, (int)((deadline - now) / 1000000ull) + 1);
            } while (n < 0 && errno == EINTR);
            int soerr = ETIMEDOUT;
            socklen_t sl = sizeof(soerr);
            if (n > 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            if (soerr == 0)
                rc = 0;
            else
                errno = soerr;
        }
        if (rc == 0) {
            freeaddrinfo(res);
            *out = fd;
            return 0;
        }
        last = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return dais_err_set(err, DAIS_EAGAIN, "cannot connect to the sync port %s:%s: %s",
                        c->master_host, p->port, strerror(last));
}

/* Connects and sends MODEL_SYNC_REQUEST for `offset`. */
static int request(const pull *p, uint64_t offset, int *fd, dais_err *err)
{
    const dais_worker_config *c = p->cfg;
    int rc = connect_master(p, fd, err);
    if (rc != 0) return rc;
    dais_msg_sync_req q;
    memset(&q, 0, sizeof(q));
    snprintf(q.node_id, sizeof(q.node_id), "%s", c->node_id);
    snprintf(q.model, sizeof(q.model), "%s", c->pull_model);
    q.protocol_version = DAIS_PROTO_VERSION;
    q.offset = offset;
    q.layer_first = c->layer_last > 0 ? c->layer_first : 0; /* --layers: only that stage's */
    q.layer_last = c->layer_last > 0 ? c->layer_last : 0;   /* tensors (a shard file) */
    char subject[512];
    dais_msg *m = NULL;
    if (dais_sync_auth_subject_layers(q.node_id, q.model, offset, q.layer_first, q.layer_last,
                                      subject, sizeof(subject)) != 0 ||
        dais_auth_make_discovery(c->token, c->token_len, subject, dais_wall_ms(), &q.auth) != 0 ||
        (m = dais_msg_new(DAIS_MSG_MODEL_SYNC_REQUEST, c->node_id, "master")) == NULL ||
        dais_sync_req_encode(&q, m) != 0) {
        rc = dais_err_set(err, DAIS_EINTERNAL, "cannot build the MODEL_SYNC_REQUEST");
    } else {
        dais_frame_limits lim = {.max_json = c->max_frame_json, .max_bin = c->max_frame_bin};
        rc = dais_frame_fd_write(*fd, m, NULL, 0, &lim, dais_now_ns() + 10000000000ull, err);
        if (rc != 0) rc = dais_err_set(err, DAIS_EAGAIN, "sending the request: %s", err->msg);
    }
    dais_msg_free(m);
    if (rc != 0) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

/* One answer: 0 with *m owned and *ch decoded (borrowing from *m); 1 with *e decoded (an
 * ERROR); DAIS_EAGAIN when the connection failed or timed out (transient); DAIS_EPROTO for a
 * frame that is neither. */
static int answer(const pull *p, int fd, uint32_t wait_ms, dais_msg **m, dais_msg_sync_chunk *ch,
                  dais_msg_error *e, dais_err *err)
{
    const dais_worker_config *c = p->cfg;
    dais_frame_limits lim = {.max_json = c->max_frame_json, .max_bin = c->max_frame_bin};
    *m = NULL;
    int rc = dais_frame_fd_read(fd, &lim, dais_now_ns() + (uint64_t)wait_ms * 1000000ull, m, err);
    if (rc == DAIS_ECLOSED || rc == DAIS_ETIMEOUT || rc == DAIS_EIO)
        return dais_err_set(err, DAIS_EAGAIN, "the sync connection failed: %s", err->msg);
    if (rc != 0)
        return dais_err_set(err, DAIS_EPROTO, "malformed frame from the master: %s", err->msg);
    if ((*m)->type == DAIS_MSG_ERROR) {
        rc = dais_error_decode(*m, e, err);
        dais_msg_free(*m);
        *m = NULL;
        return rc == 0 ? 1 : dais_err_set(err, DAIS_EPROTO, "malformed ERROR: %s", err->msg);
    }
    if ((*m)->type == DAIS_MSG_MODEL_SYNC_CHUNK && dais_sync_chunk_decode(*m, ch, err) == 0)
        return 0;
    rc = (*m)->type == DAIS_MSG_MODEL_SYNC_CHUNK
             ? dais_err_set(err, DAIS_EPROTO, "malformed MODEL_SYNC_CHUNK: %s", err->msg)
             : dais_err_set(err, DAIS_EPROTO, "unexpected %s on the sync port",
                            dais_msg_type_name((*m)->type));
    dais_msg_free(*m);
    *m = NULL;
    return rc;
}

/* What an ERROR from the master means for the pull. `offset` is what we asked for. */
static enum outcome on_error(pull *p, const dais_msg_error *e, uint64_t offset, dais_err *err)
{
    const char *model = p->cfg->pull_model;
    if (strcmp(e->code, DAIS_SYNC_ERR_BAD_TOKEN) == 0) {
        dais_err_set(err, DAIS_EAUTH,
                     "the master refused the model download: bad_token (this worker's cluster "
                     "token is not the master's: check DAIS_CLUSTER_TOKEN / --token-file)");
        return PULL_FAIL;
    }
    if (strcmp(e->code, "unknown_model") == 0) {
        dais_err_set(err, DAIS_ENOTFOUND, "the master does not serve '%s': %.200s", model,
                     e->message);
        return PULL_FAIL;
    }
    if (strcmp(e->code, "bad_request") == 0 && offset > 0) {
        /* our file is longer than the master's: it cannot be a prefix of it */
        DAIS_WARN("model sync: %s; starting over", e->message);
        return PULL_AGAIN;
    }
    if (strcmp(e->code, "bad_request") == 0 || strcmp(e->code, "unsupported") == 0 ||
        strcmp(e->code, "proto") == 0) {
        dais_err_set(err, DAIS_EPROTO, "the master refused the model download: %s: %.200s", e->code,
                     e->message);
        return PULL_FAIL;
    }
    /* busy, clock_skew, replay, overloaded, internal, or a newer code: try again later */
    dais_err_set(err, DAIS_EAGAIN, "the master answered %s: %.200s", e->code, e->message);
    return PULL_RETRY;
}

/* ---- the two steps ------------------------------------------------------------------------- */

/* Step 1: is the file already at dest the master's? */
static enum outcome check_dest(pull *p, dais_err *err)
{
    struct stat st;
    if (stat(p->dest, &st) != 0) {
        p->dest_checked = true; /* nothing there: download */
        return PULL_AGAIN;
    }
    if (!S_ISREG(st.st_mode)) {
        dais_err_set(err, DAIS_EIO, "%s exists and is not a regular file", p->dest);
        return PULL_FAIL;
    }
    uint64_t size = (uint64_t)st.st_size;
    int fd;
    if (request(p, size, &fd, err) != 0) return PULL_RETRY;
    dais_msg *m;
    dais_msg_sync_chunk ch;
    dais_msg_error e;
    int rc = answer(p, fd, FIRST_ANSWER_MS, &m, &ch, &e, err);
    close(fd);
    if (rc == DAIS_EAGAIN) return PULL_RETRY;
    if (rc < 0) return PULL_FAIL;
    enum outcome o = PULL_AGAIN;
    bool same = false;
    char master_sha[65] = "", ours[65] = "";
    uint64_t master_size = 0;
    if (rc == 1) {
        if (strcmp(e.code, "bad_request") != 0) return on_error(p, &e, 0, err);
        /* offset beyond the master's size: ours is longer, so it is not the master's */
    } else {
        memcpy(master_sha, ch.sha256, sizeof(master_sha));
        master_size = ch.size;
        bool bad_answer = ch.offset != size;
        dais_msg_free(m);
        if (bad_answer) {
            dais_err_set(err, DAIS_EPROTO, "the master answered from another offset");
            return PULL_FAIL;
        }
        if (master_size == size) {
            uint64_t t0 = dais_now_ns();
            if (!dais_model_hash_cache_lookup(p->dest, ours)) {
                if (hash_file(p->dest, size, ours, err) != 0) return PULL_FAIL;
                dais_model_hash_cache_store(p->dest, ours);
            }
            same = strcmp(ours, master_sha) == 0;
            DAIS_DEBUG("model sync: hashed %s in %.2f s", p->dest,
                       (double)(dais_now_ns() - t0) / 1e9);
        }
    }
    if (same) {
        DAIS_INFO("model sync: %s is the master's '%s' (%.1f MB, sha256 %s): not downloading",
                  p->dest, p->cfg->pull_model, mb(size), master_sha);
        unlink(p->part); /* a leftover of an older download, if any */
        return PULL_DONE;
    }
    if (master_sha[0] != '\0')
        DAIS_INFO("model sync: the cached %s (%.1f MB%s%s) is not the master's '%s' (%.1f MB, "
                  "sha256 %s): downloading it again",
                  p->dest, mb(size), ours[0] != '\0' ? ", sha256 " : "", ours, p->cfg->pull_model,
                  mb(master_size), master_sha);
    else
        DAIS_INFO("model sync: the cached %s (%.1f MB) is longer than the master's '%s': "
                  "downloading it again",
                  p->dest, mb(size), p->cfg->pull_model);
    if (unlink(p->dest) != 0 && errno != ENOENT) {
        dais_err_set(err, DAIS_EIO, "cannot remove the stale %s: %s", p->dest, strerror(errno));
        return PULL_FAIL;
    }
    p->dest_checked = true;
    return o;
}

/* Writes one chunk at its offset and hashes it. */
static int put_chunk(const pull *p, int pfd, EVP_MD_CTX *md, const dais_msg_sync_chunk *ch,
                     dais_err *err)
{
    for (uint32_t done = 0; done < ch->len;) {
        ssize_t w = pwrite(pfd, ch->data + done, ch->len - done, (off_t)(ch->offset + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return write_error("write", p->part, w < 0 ? errno : ENOSPC, err);
        done += (uint32_t)w;
    }
    if (ch->len > 0 && EVP_DigestUpdate(md, ch->data, ch->len) != 1)
        return dais_err_set(err, DAIS_EINTERNAL, "SHA-256 failed");
    return 0;
}

/* Step 2: download into dest.part from its current size, verify, move into place. */
static enum outcome download(pull *p, dais_err *err)
{
    const char *model = p->cfg->pull_model;
    /* The .part is opened only once the master has answered: a refused pull leaves nothing. */
    struct stat st;
    uint64_t offset = 0;
    if (p->restart_part) {
        if (unlink(p->part) != 0 && errno != ENOENT) {
            write_error("remove", p->part, errno, err);
            return PULL_FAIL;
        }
        p->restart_part = false;
    } else if (stat(p->part, &st) == 0) {
        offset = (uint64_t)st.st_size;
    } else if (errno != ENOENT) {
        write_error("stat", p->part, errno, err);
        return PULL_FAIL;
    }
    int fd = -1, pfd = -1;
    dais_msg *m = NULL;
    dais_msg_sync_chunk ch;
    dais_msg_error e;
    EVP_MD_CTX *md = NULL;
    enum outcome o = PULL_FAIL;
    if (request(p, offset, &fd, err) != 0) {
        o = PULL_RETRY;
        goto out;
    }
    int rc = answer(p, fd, FIRST_ANSWER_MS, &m, &ch, &e, err);
    if (rc == DAIS_EAGAIN) o = PULL_RETRY;
    if (rc < 0) goto out;
    if (rc == 1) {
        o = on_error(p, &e, offset, err);
        if (o == PULL_AGAIN) p->restart_part = true;
        goto out;
    }
    if (ch.offset != offset) {
        dais_err_set(err, DAIS_EPROTO, "the master answered from offset %llu, not %llu",
                     (unsigned long long)ch.offset, (unsigned long long)offset);
        goto out;
    }
    pfd = open(p->part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (pfd < 0) {
        write_error("create", p->part, errno, err);
        goto out;
    }
    if (fstat(pfd, &st) != 0 || (uint64_t)st.st_size != offset) {
        /* changed under us (nothing else should write there: dest.lock) */
        dais_err_set(err, DAIS_EAGAIN, "%s changed during the request", p->part);
        o = PULL_RETRY;
        goto out;
    }
    const uint64_t size = ch.size;
    char sha[65];
    memcpy(sha, ch.sha256, sizeof(sha));
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        dais_err_set(err, DAIS_ENOMEM, "no memory for SHA-256");
        goto out;
    }
    if (offset > 0) {
        DAIS_INFO("model sync: resuming '%s' at %.1f of %.1f MB (%s)", model, mb(offset), mb(size),
                  p->part);
        if (hash_prefix(md, pfd, offset, p->part, err) != 0) goto out;
    } else {
        DAIS_INFO("model sync: downloading '%s' (%.1f MB, sha256 %s) from %s:%s into %s", model,
                  mb(size), sha, p->cfg->master_host, p->port, p->dest);
    }
    const uint64_t t0 = dais_now_ns();
    uint64_t pos = offset, last_log = t0;
    for (;;) {
        if (ch.size != size || strcmp(ch.sha256, sha) != 0 || ch.offset != pos) {
            dais_err_set(err, DAIS_EPROTO, "the master's chunks are inconsistent (at %llu)",
                         (unsigned long long)pos);
            goto out;
        }
        if (put_chunk(p, pfd, md, &ch, err) != 0) goto out;
        pos += ch.len;
        p->progress += ch.len;
        bool final = ch.final;
        dais_msg_free(m);
        m = NULL;
        uint64_t now = dais_now_ns();
        if (now - last_log >= PROGRESS_EVERY_NS && !final) {
            DAIS_INFO("model sync: '%s' %.1f of %.1f MB (%.0f %%), %.1f MB/s", model, mb(pos),
                      mb(size), size > 0 ? 100.0 * (double)pos / (double)size : 100.0,
                      mb(pos - offset) / ((double)(now - t0) / 1e9));
            last_log = now;
        }
        if (final) break;
        rc = answer(p, fd, NEXT_CHUNK_MS, &m, &ch, &e, err);
        if (rc == DAIS_EAGAIN) {
            DAIS_WARN("model sync: '%s' interrupted at %.1f of %.1f MB: %s", model, mb(pos),
                      mb(size), err->msg);
            o = PULL_RETRY;
            goto out;
        }
        if (rc < 0) goto out;
        if (rc == 1) {
            o = on_error(p, &e, pos, err);
            goto out;
        }
    }
    close(fd);
    fd = -1;
    double secs = (double)(dais_now_ns() - t0) / 1e9;
    if (fsync(pfd) != 0) {
        write_error("write", p->part, errno, err);
        goto out;
    }
    char got[65];
    if (hash_final(md, got, err) != 0) goto out;
    if (strcmp(got, sha) != 0) {
        unlink(p->part);
        p->hash_failures++;
        if (p->hash_failures > 1) {
            dais_err_set(err, DAIS_EFORMAT,
                         "hash mismatch again downloading '%s': got sha256 %s, the master says "
                         "%s; giving up",
                         model, got, sha);
            goto out;
        }
        DAIS_ERROR("model sync: hash mismatch for '%s': got sha256 %s, the master says %s; "
                   "deleted %s, downloading it again from the start",
                   model, got, sha, p->part);
        o = PULL_AGAIN;
        goto out;
    }
    if (rename(p->part, p->dest) != 0) {
        write_error("move the download to", p->dest, errno, err);
        goto out;
    }
    fsync_dir_of(p->dest);
    dais_model_hash_cache_store(p->dest, sha); /* verified: the load need not hash it again */
    DAIS_INFO("model sync: downloaded '%s' into %s: %.1f MB in %.2f s (%.1f MB/s), sha256 %s "
              "verified",
              model, p->dest, mb(size - offset), secs, secs > 0 ? mb(size - offset) / secs : 0.0,
              sha);
    o = PULL_DONE;
out:
    dais_msg_free(m);
    EVP_MD_CTX_free(md);
    if (fd >= 0) close(fd);
    if (pfd >= 0) close(pfd);
    return o;
}

/* ---- the whole pull ---------------------------------------------------------------------------
 */

int dais_modelsync_pull(const dais_worker_config *cfg, char *path, size_t cap, dais_err *err)
{
    pull *p = calloc(1, sizeof(*p));
    if (p == NULL) return dais_err_set(err, DAIS_ENOMEM, "no memory");
    p->cfg = cfg;
    snprintf(p->port, sizeof(p->port), "%u", (unsigned)cfg->sync_port);
    int n =
        cfg->model[0] != '\0' ? snprintf(p->dest, sizeof(p->dest), "%s", cfg->model)
        : cfg->layer_last > 0
            ? snprintf(p->dest, sizeof(p->dest), "%s/%s.layers-%d-%d.gguf", cfg->model_cache,
                       cfg->pull_model, (int)cfg->layer_first, (int)cfg->layer_last)
            : snprintf(p->dest, sizeof(p->dest), "%s/%s.gguf", cfg->model_cache, cfg->pull_model);
    int rc = 0, lockfd = -1;
    if (n < 0 || (size_t)n >= sizeof(p->dest) || (size_t)n >= cap) {
        rc = dais_err_set(err, DAIS_EINVAL, "the model path is too long");
        goto out;
    }
    snprintf(p->part, sizeof(p->part), "%s.part", p->dest);
    snprintf(p->lock, sizeof(p->lock), "%s.lock", p->dest);
    if ((rc = mkdir_parents(p->dest, err)) != 0) goto out;
    lockfd = open(p->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lockfd < 0) {
        rc = write_error("create", p->lock, errno, err);
        goto out;
    }
    if (flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
        DAIS_INFO("model sync: another process is pulling into %s; waiting for it", p->dest);
        while (flock(lockfd, LOCK_EX) != 0 && errno == EINTR) {
        }
    }
    dais_backoff bo;
    dais_backoff_config bc;
    dais_backoff_config_default(&bc);
    bc.base_ns = (uint64_t)(cfg->retry_base_ms > 0 ? cfg->retry_base_ms : 100) * 1000000ull;
    bc.max_ns = (uint64_t)(cfg->retry_max_ms > 0 ? cfg->retry_max_ms : 5000) * 1000000ull;
    if (bc.max_ns < bc.base_ns) bc.max_ns = bc.base_ns;
    bc.max_attempts = 0;
    bc.deadline_ns = 0;
    bc.jitter = DAIS_BACKOFF_FULL;
    if (dais_backoff_init(&bo, &bc, dais_now_ns(), 0) != 0) {
        rc = dais_err_set(err, DAIS_EINVAL, "bad retry settings");
        goto out;
    }
    for (;;) {
        uint64_t before = p->progress;
        dais_err_clear(err);
        enum outcome o = p->dest_checked ? download(p, err) : check_dest(p, err);
        if (o == PULL_DONE) break;
        if (o == PULL_FAIL) {
            rc = err->code != 0 ? err->code : DAIS_EINTERNAL;
            goto out;
        }
        if (o == PULL_AGAIN) continue;
        uint64_t now = dais_now_ns(), delay = 0;
        if (p->progress > before) dais_backoff_reset(&bo, now);
        dais_backoff_next(&bo, now, &delay);
        DAIS_WARN("model sync: %s; retrying in %.1f s", err->msg, (double)delay / 1e9);
        struct timespec ts = {(time_t)(delay / 1000000000ull), (long)(delay % 1000000000ull)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    snprintf(path, cap, "%s", p->dest);
out:
    if (lockfd >= 0) close(lockfd); /* releases the flock */
    free(p);
    return rc;
}
