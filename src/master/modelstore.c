/* The master's model store on the sync port: acceptor, transfer threads, directory scan and
 * hash cache (modelstore.h). */
#include "master/modelstore.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/metric_names.h"
#include "engine/shard.h"
#include "proto/auth.h"
#include "proto/frame_fd.h"
#include "proto/messages.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NAME_LEN_MAX     128        /* a served name: the file name without ".gguf" */
#define SCAN_MAX         4096       /* files of the directory considered */
#define HASH_CACHE_MAX   256        /* files whose SHA-256 is remembered */
#define REPLAY_MAX       16384      /* request nonces remembered within the auth window */
#define HASH_BUF         (1u << 20) /* pread size while hashing */
#define REQUEST_JSON_MAX (64u << 10)
#define LINGER_MS        5000 /* after the final chunk: wait this long for the peer's close */

typedef struct hash_entry {
    char name[NAME_LEN_MAX + 1];
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
    char sha[65];
    uint64_t used; /* use_clock at the last hit, for eviction */
} hash_entry;

enum { SLOT_FREE = 0, SLOT_RUNNING, SLOT_DONE };

typedef struct slot {
    struct dais_modelstore *s;
    pthread_t th;
    int fd;    /* -1 once the transfer closed it (under s->mu) */
    int state; /* SLOT_* (under s->mu) */
    char peer[64];
} slot;

struct dais_modelstore {
    dais_modelstore_config cfg; /* its strings point at the copies below */
    char dir[1024];
    char addr[256];
    char node_id[DAIS_NODE_ID_MAX + 1];
    char token[1025];
    int lfd;
    int wake[2];
    uint16_t port;
    pthread_t acceptor;
    bool acceptor_started;
    atomic_bool stopping;

    pthread_mutex_t mu;       /* slots, the replay cache, the hash cache */
    pthread_mutex_t hash_mu;  /* one hash computation at a time (they are disk-bound) */
    pthread_mutex_t shard_mu; /* one shard file generated at a time; guards shard_dir */
    char shard_dir[1024];     /* generated shard files ("" until the first is asked for) */
    slot *slots;
    dais_replay_cache *replay;
    hash_entry cache[HASH_CACHE_MAX];
    size_t n_cache;
    uint64_t use_clock;

    _Atomic uint64_t bytes_sent;
    _Atomic uint64_t hashes;
    _Atomic uint64_t results[DAIS_SYNC__COUNT];
    _Atomic uint32_t active;
    dais_counter *m_results[DAIS_SYNC__COUNT];
    dais_counter *m_bytes;
};

static const char *const result_names[DAIS_SYNC__COUNT] = {
#define DAIS_SYNC_RESULT_STR(n, s) [DAIS_SYNC_##n] = (s),
    DAIS_SYNC_RESULT_MAP(DAIS_SYNC_RESULT_STR)
#undef DAIS_SYNC_RESULT_STR
};

const char *dais_sync_result_name(enum dais_sync_result r)
{
    return (unsigned)r < DAIS_SYNC__COUNT ? result_names[r] : "?";
}

void dais_modelstore_config_default(dais_modelstore_config *c)
{
    memset(c, 0, sizeof(*c));
    c->port = 8890;
    c->auth_window_ms = DAIS_AUTH_DEFAULT_WINDOW_MS;
    c->max_transfers = 4;
    c->chunk_size = DAIS_SYNC_CHUNK_DEFAULT;
    c->io_timeout_ms = 30000;
}

static void count(dais_modelstore *s, enum dais_sync_result r)
{
    atomic_fetch_add(&s->results[r], 1);
    dais_counter_inc(s->m_results[r]);
}

static bool stopping(dais_modelstore *s)
{
    return atomic_load(&s->stopping);
}

/* ---- the directory ------------------------------------------------------------------------ */

typedef struct served {
    char name[NAME_LEN_MAX + 1];
} served;

static int cmp_served(const void *a, const void *b)
{
    return strcmp(((const served *)a)->name, ((const served *)b)->name);
}

/* A file name that gives a served name: "<name>.gguf", name 1..128 bytes without control
 * characters, not hidden, no leading or trailing space. */
static bool served_file_name(const char *fn, size_t *name_len)
{
    size_t n = strlen(fn);
    if (n <= 5 || strcmp(fn + n - 5, ".gguf") != 0 || fn[0] == '.') return false;
    n -= 5;
    if (n > NAME_LEN_MAX || fn[0] == ' ' || fn[n - 1] == ' ') return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)fn[i] < 0x20 || fn[i] == 0x7f) return false;
    *name_len = n;
    return true;
}

/* The served files, sorted by name: *out owned (free()), *n entries. Re-read on every request,
 * so files added to or removed from the directory are seen without a restart. */
static int scan(dais_modelstore *s, served **out, size_t *n, dais_err *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(s->dir);
    if (d == NULL)
        return dais_err_set(err, DAIS_EIO, "cannot read the model directory %s: %s", s->dir,
                            strerror(errno));
    size_t cap = 0, cnt = 0;
    served *v = NULL;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL && cnt < SCAN_MAX) {
        size_t nl;
        if (!served_file_name(e->d_name, &nl)) continue;
        char path[2048];
        struct stat st;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", s->dir, e->d_name) >= sizeof(path) ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (cnt == cap) {
            size_t nc = cap == 0 ? 16 : cap * 2;
            served *nv = realloc(v, nc * sizeof(*v));
            if (nv == NULL) {
                rc = dais_err_set(err, DAIS_ENOMEM, "no memory to list the model directory");
                break;
            }
            v = nv;
            cap = nc;
        }
        memcpy(v[cnt].name, e->d_name, nl);
        v[cnt].name[nl] = '\0';
        cnt++;
    }
    closedir(d);
    if (rc != 0) {
        free(v);
        return rc;
    }
    if (cnt > 1) qsort(v, cnt, sizeof(*v), cmp_served);
    *out = v;
    *n = cnt;
    return 0;
}

static size_t names_text(const served *v, size_t n, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    if (n == 0) {
        snprintf(buf, cap, "none");
        return 0;
    }
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        int w = snprintf(buf + o, cap - o, "%s'%s'", i > 0 ? ", " : "", v[i].name);
        if (w < 0 || (size_t)w >= cap - o) {
            snprintf(buf + (cap > 4 ? cap - 4 : 0), cap > 4 ? 4 : cap, "...");
            break;
        }
        o += (size_t)w;
    }
    return n;
}

size_t dais_modelstore_names(dais_modelstore *s, char *buf, size_t cap)
{
    served *v;
    size_t n;
    dais_err err;
    if (cap == 0) return 0;
    if (scan(s, &v, &n, &err) != 0) {
        snprintf(buf, cap, "none (%s)", err.msg);
        return 0;
    }
    names_text(v, n, buf, cap);
    free(v);
    return n;
}

/* ---- hashes -------------------------------------------------------------------------------- */

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static bool same_file(const hash_entry *h, const char *name, const struct stat *st)
{
    return h->dev == st->st_dev && h->ino == st->st_ino && h->size == st->st_size &&
           h->mtime_ns == mtime_ns(st) && strcmp(h->name, name) == 0;
}

/* Looks the file up in the cache; copies its hash on a hit. Under s->mu. */
static bool cache_get(dais_modelstore *s, const char *name, const struct stat *st, char sha[65])
{
    for (size_t i = 0; i < s->n_cache; i++) {
        if (same_file(&s->cache[i], name, st)) {
            s->cache[i].used = ++s->use_clock;
            memcpy(sha, s->cache[i].sha, 65);
            return true;
        }
    }
    return false;
}

/* Remembers a hash, replacing the entry of the same name or the least recently used. */
static void cache_put(dais_modelstore *s, const char *name, const struct stat *st,
                      const char sha[65])
{
    size_t at = s->n_cache;
    for (size_t i = 0; i < s->n_cache; i++)
        if (strcmp(s->cache[i].name, name) == 0) at = i;
    if (at == s->n_cache) {
        if (s->n_cache < HASH_CACHE_MAX) {
            s->n_cache++;
        } else {
            at = 0;
            for (size_t i = 1; i < s->n_cache; i++)
                if (s->cache[i].used < s->cache[at].used) at = i;
        }
    }
    hash_entry *h = &s->cache[at];
    snprintf(h->name, sizeof(h->name), "%s", name);
    h->dev = st->st_dev;
    h->ino = st->st_ino;
    h->size = st->st_size;
    h->mtime_ns = mtime_ns(st);
    memcpy(h->sha, sha, 65);
    h->used = ++s->use_clock;
}

/* SHA-256 of the open file's first `size` bytes into sha[65]. */
static int compute_sha(dais_modelstore *s, int fd, uint64_t size, char sha[65], dais_err *err)
{
    uint8_t *buf = malloc(HASH_BUF);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = 0;
    if (buf == NULL || md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        rc = dais_err_set(err, DAIS_ENOMEM, "no memory to hash a model file");
        goto done;
    }
    for (uint64_t off = 0; off < size;) {
        if (stopping(s)) {
            rc = dais_err_set(err, DAIS_ECANCELLED, "the store is stopping");
            goto done;
        }
        size_t want = size - off < HASH_BUF ? (size_t)(size - off) : HASH_BUF;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            rc = dais_err_set(err, DAIS_EIO, "reading at %llu: %s", (unsigned long long)off,
                              r < 0 ? strerror(errno) : "the file is shorter than it was");
            goto done;
        }
        if (EVP_DigestUpdate(md, buf, (size_t)r) != 1) {
            rc = dais_err_set(err, DAIS_EINTERNAL, "SHA-256 failed");
            goto done;
        }
        off += (uint64_t)r;
    }
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    if (EVP_DigestFinal_ex(md, dg, &dl) != 1 || dl != 32) {
        rc = dais_err_set(err, DAIS_EINTERNAL, "SHA-256 failed");
        goto done;
    }
    dais_hex_encode(dg, 32, sha);
done:
    EVP_MD_CTX_free(md);
    free(buf);
    return rc;
}

/* The hash of the open file `fd` (served as `name`, with fstat `st`): from the cache, or
 * computed now (one computation at a time; a file that changes meanwhile is an error, so a
 * hash is only ever cached for the bytes it describes). */
static int file_hash(dais_modelstore *s, const char *name, int fd, const struct stat *st,
                     char sha[65], dais_err *err)
{
    pthread_mutex_lock(&s->mu);
    bool hit = cache_get(s, name, st, sha);
    pthread_mutex_unlock(&s->mu);
    if (hit) return 0;
    pthread_mutex_lock(&s->hash_mu);
    pthread_mutex_lock(&s->mu);
    hit = cache_get(s, name, st, sha); /* another transfer may have just computed it */
    pthread_mutex_unlock(&s->mu);
    int rc = 0;
    if (!hit) {
        uint64_t t0 = dais_now_ns();
        rc = compute_sha(s, fd, (uint64_t)st->st_size, sha, err);
        struct stat st2;
        if (rc == 0 &&
            (fstat(fd, &st2) != 0 || st2.st_size != st->st_size || mtime_ns(&st2) != mtime_ns(st)))
            rc = dais_err_set(err, DAIS_EIO, "'%s' changed while it was hashed", name);
        if (rc == 0) {
            atomic_fetch_add(&s->hashes, 1);
            pthread_mutex_lock(&s->mu);
            cache_put(s, name, st, sha);
            pthread_mutex_unlock(&s->mu);
            DAIS_INFO("model store: '%s' (%.1f MB) has sha256 %s (hashed in %.2f s)", name,
                      (double)st->st_size / 1e6, sha, (double)(dais_now_ns() - t0) / 1e9);
        }
    }
    pthread_mutex_unlock(&s->hash_mu);
    return rc;
}

/* A served file, open. */
typedef struct opened {
    int fd;
    char name[NAME_LEN_MAX + 1];
    char sha[65];
    uint64_t size;
} opened;

/* Opens `<dir>/<name>.gguf` and gets its hash. */
static int open_served(dais_modelstore *s, const char *name, opened *o, dais_err *err)
{
    char path[2048];
    snprintf(path, sizeof(path), "%s/%s.gguf", s->dir, name);
    o->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (o->fd < 0) return dais_err_set(err, DAIS_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(o->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = dais_err_set(err, DAIS_EIO, "%s is not a regular file", path);
    } else if ((uint64_t)st.st_size > DAIS_SYNC_SIZE_MAX) {
        rc = dais_err_set(err, DAIS_EIO, "%s is too large to serve", path);
    } else {
        rc = file_hash(s, name, o->fd, &st, o->sha, err);
        o->size = (uint64_t)st.st_size;
        snprintf(o->name, sizeof(o->name), "%s", name);
    }
    if (rc != 0) {
        close(o->fd);
        o->fd = -1;
    }
    return rc;
}

/* Finds `model` (a name, else a hash) among the served files and opens it. DAIS_ENOTFOUND
 * with the served names in err. */
static int resolve_open(dais_modelstore *s, const char *model, opened *o, dais_err *err)
{
    o->fd = -1;
    served *v;
    size_t n;
    int rc = scan(s, &v, &n, err);
    if (rc != 0) return rc;
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, model) == 0) {
            rc = open_served(s, v[i].name, o, err);
            free(v);
            return rc;
        }
    if (dais_hex_valid(model, 64)) {
        for (size_t i = 0; i < n; i++) {
            dais_err e2;
            if (open_served(s, v[i].name, o, &e2) != 0) {
                if (e2.code == DAIS_ECANCELLED) {
                    free(v);
                    return dais_err_set(err, e2.code, "%s", e2.msg);
                }
                DAIS_WARN("model store: %s", e2.msg);
                continue;
            }
            if (strcmp(o->sha, model) == 0) {
                free(v);
                return 0;
            }
            close(o->fd);
            o->fd = -1;
        }
    }
    char names[1024];
    names_text(v, n, names, sizeof(names));
    free(v);
    return dais_err_set(err, DAIS_ENOTFOUND, "unknown model '%s'; served: %s", model, names);
}

int dais_modelstore_resolve(dais_modelstore *s, const char *model, char name[129], char sha[65],
                            uint64_t *size, dais_err *err)
{
    opened o;
    int rc = resolve_open(s, model, &o, err);
    if (rc != 0) return rc;
    memcpy(name, o.name, sizeof(o.name));
    memcpy(sha, o.sha, sizeof(o.sha));
    *size = o.size;
    close(o.fd);
    return 0;
}

/* ---- shard files ---------------------------------------------------------------------------- */

/* The shard file of layers [first, last) of the served file `src` (open): generated once into
 * the store's private shard directory ($TMPDIR or /tmp, "dais-shards.XXXXXX", mode 0700,
 * removed at stop) under shard_mu, then opened like a served file (hash cached under the key
 * "<name>#<first>-<last>"). Replaces *src with the shard (same served name). DAIS_EINVAL with
 * err when the range does not fit the model; DAIS_EFORMAT / DAIS_EUNSUPPORTED when the engine
 * cannot load the file; DAIS_EIO when it cannot be written. A range that is the whole model
 * leaves *src as it is (the file itself is served). */
static int open_shard(dais_modelstore *s, opened *src, int32_t first, int32_t last, dais_err *err)
{
    char path[1400], key[NAME_LEN_MAX + 1];
    int rc = 0;
    /* The range against the model's layer count (the metadata only: a quick parse). */
    snprintf(path, sizeof(path), "%s/%s.gguf", s->dir, src->name);
    dais_gguf *g = dais_gguf_open(path, err);
    if (g == NULL) return DAIS_EFORMAT;
    uint32_t n_layers = 0;
    rc = dais_gguf_get_u32(g, "llama.block_count", &n_layers, NULL);
    dais_gguf_free(g);
    if (rc != 0 || n_layers == 0)
        return dais_err_set(err, DAIS_EFORMAT, "'%s' has no valid llama.block_count", src->name);
    if ((uint32_t)last > n_layers)
        return dais_err_set(err, DAIS_EINVAL, "layers [%d, %d): '%s' has %u layers", (int)first,
                            (int)last, src->name, n_layers);
    if (first == 0 && (uint32_t)last == n_layers) return 0; /* the whole file it is */
    pthread_mutex_lock(&s->shard_mu);
    if (s->shard_dir[0] == '\0') {
        const char *tmp = getenv("TMPDIR");
        snprintf(s->shard_dir, sizeof(s->shard_dir), "%s/dais-shards.XXXXXX",
                 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
        if (mkdtemp(s->shard_dir) == NULL) {
            rc = dais_err_set(err, DAIS_EIO, "cannot create a directory for shard files: %s",
                              strerror(errno));
            s->shard_dir[0] = '\0';
        }
    }
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/%s.%d-%d.gguf", s->shard_dir, src->sha, (int)first,
                 (int)last);
        struct stat st;
        if (stat(path, &st) != 0) {
            char in[2048];
            snprintf(in, sizeof(in), "%s/%s.gguf", s->dir, src->name);
            uint64_t t0 = dais_now_ns();
            dais_shard_info si;
            rc = dais_shard_write(in, first, last, path, &si, err);
            if (rc == 0 && strcmp(si.source_sha256, src->sha) != 0) {
                rc =
                    dais_err_set(err, DAIS_EIO, "'%s' changed while its shard was made", src->name);
                unlink(path);
            }
            if (rc == 0)
                DAIS_INFO("model store: made the shard file of layers [%d, %d) of '%s' in %.2f s",
                          (int)first, (int)last, src->name, (double)(dais_now_ns() - t0) / 1e9);
        }
    }
    pthread_mutex_unlock(&s->shard_mu);
    if (rc != 0) return rc;
    opened o = {.fd = -1};
    o.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (o.fd < 0) return dais_err_set(err, DAIS_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    snprintf(key, sizeof(key), "%.100s#%d-%d", src->name, (int)first, (int)last);
    if (fstat(o.fd, &st) != 0) {
        rc = dais_err_set(err, DAIS_EIO, "cannot stat %s", path);
    } else {
        rc = file_hash(s, key, o.fd, &st, o.sha, err);
        o.size = (uint64_t)st.st_size;
    }
    if (rc != 0) {
        close(o.fd);
        return rc;
    }
    memcpy(o.name, src->name, sizeof(o.name));
    close(src->fd);
    *src = o;
    return 0;
}

/* Removes the generated shard files and their directory. */
static void remove_shards(dais_modelstore *s)
{
    if (s->shard_dir[0] == '\0') return;
    DIR *d = opendir(s->shard_dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char p[1400];
        snprintf(p, sizeof(p), "%s/%s", s->shard_dir, e->d_name);
        unlink(p);
    }
    if (d != NULL) closedir(d);
    rmdir(s->shard_dir);
}

/* ---- one transfer --------------------------------------------------------------------------- */

/* Sends ERROR code/message to `target` (a node id, or "worker" before the request was read)
 * with a short deadline: the frame is small and the connection closes next anyway. */
static void send_error(dais_modelstore *s, int fd, const char *target, const char *in_reply_to,
                       const char *code, const char *message)
{
    dais_msg *m = dais_msg_new(
        DAIS_MSG_ERROR, s->node_id,
        dais_ident_valid(target, strlen(target), DAIS_NODE_ID_MAX) ? target : "worker");
    if (m == NULL) return;
    dais_msg_error e;
    memset(&e, 0, sizeof(e));
    snprintf(e.code, sizeof(e.code), "%s", code);
    snprintf(e.message, sizeof(e.message), "%s", message);
    if (in_reply_to != NULL) snprintf(e.in_reply_to, sizeof(e.in_reply_to), "%s", in_reply_to);
    dais_err err;
    if (dais_error_encode(&e, m) == 0)
        dais_frame_fd_write(fd, m, NULL, 0, NULL, dais_now_ns() + 1000000000ull, &err);
    dais_msg_free(m);
}

/* Waits up to `ms` for the peer to close after our last frame, discarding anything it sends:
 * closing with unread input would reset the connection and could discard our last bytes at
 * the peer. */
static void linger_close_wait(int fd, uint32_t ms)
{
    shutdown(fd, SHUT_WR);
    uint64_t deadline = dais_now_ns() + (uint64_t)ms * 1000000ull;
    char buf[4096];
    for (;;) {
        uint64_t now = dais_now_ns();
        if (now >= deadline) return;
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        int n = poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return;
    }
}

/* Sleeps until `until_ns` unless the store stops (rate limit). */
static void pace(dais_modelstore *s, uint64_t until_ns)
{
    for (;;) {
        uint64_t now = dais_now_ns();
        if (now >= until_ns || stopping(s)) return;
        uint64_t d = until_ns - now;
        if (d > 100000000ull) d = 100000000ull;
        struct timespec ts = {(time_t)(d / 1000000000ull), (long)(d % 1000000000ull)};
        nanosleep(&ts, NULL);
    }
}

static enum dais_sync_result auth_result(enum dais_auth_verdict v, const char **code)
{
    switch (v) {
    case DAIS_AUTH_OK:
        *code = "";
        return DAIS_SYNC_OK;
    case DAIS_AUTH_SKEW:
        *code = DAIS_SYNC_ERR_CLOCK_SKEW;
        return DAIS_SYNC_CLOCK_SKEW;
    case DAIS_AUTH_REPLAY:
        *code = DAIS_SYNC_ERR_REPLAY;
        return DAIS_SYNC_REPLAY;
    case DAIS_AUTH_OVERLOADED:
        *code = DAIS_SYNC_ERR_OVERLOADED;
        return DAIS_SYNC_OVERLOADED;
    default:
        *code = DAIS_SYNC_ERR_BAD_TOKEN;
        return DAIS_SYNC_BAD_TOKEN;
    }
}

/* Streams o's bytes from `offset` to the peer. */
static enum dais_sync_result stream(dais_modelstore *s, int fd, const char *peer,
                                    const dais_msg_sync_req *q, opened *o)
{
    uint8_t *buf = o->size > q->offset ? malloc(s->cfg.chunk_size) : NULL;
    if (o->size > q->offset && buf == NULL) {
        send_error(s, fd, q->node_id, NULL, "internal", "no memory for a chunk");
        return DAIS_SYNC_ERROR;
    }
    const uint64_t t0 = dais_now_ns();
    uint64_t off = q->offset, sent = 0;
    enum dais_sync_result res = DAIS_SYNC_OK;
    for (bool final = false; !final;) {
        if (stopping(s)) {
            res = DAIS_SYNC_ABORTED;
            break;
        }
        uint64_t left = o->size - off;
        uint32_t n = left < s->cfg.chunk_size ? (uint32_t)left : s->cfg.chunk_size;
        for (uint32_t got = 0; got < n;) {
            ssize_t r = pread(o->fd, buf + got, n - got, (off_t)(off + got));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                DAIS_ERROR("model store: reading '%s' at %llu: %s", o->name,
                           (unsigned long long)(off + got),
                           r < 0 ? strerror(errno) : "the file became shorter");
                send_error(s, fd, q->node_id, NULL, "internal", "the model file cannot be read");
                free(buf);
                return DAIS_SYNC_ERROR;
            }
            got += (uint32_t)r;
        }
        final = off + n == o->size;
        dais_msg_sync_chunk c = {.size = o->size, .offset = off, .final = final, .len = n};
        snprintf(c.model, sizeof(c.model), "%s", o->name);
        memcpy(c.sha256, o->sha, sizeof(c.sha256));
        dais_msg *m = dais_msg_new(DAIS_MSG_MODEL_SYNC_CHUNK, s->node_id, q->node_id);
        dais_err err;
        int rc = m == NULL ? DAIS_ENOMEM : dais_sync_chunk_encode(&c, m);
        if (rc == 0)
            rc = dais_frame_fd_write(fd, m, n > 0 ? buf : NULL, n, NULL,
                                     dais_now_ns() + (uint64_t)s->cfg.io_timeout_ms * 1000000ull,
                                     &err);
        else
            dais_err_set(&err, rc, "cannot encode a chunk");
        dais_msg_free(m);
        if (rc != 0) {
            DAIS_WARN("model sync: '%s' to %s (%s) ended at %llu of %llu bytes: %s", o->name,
                      q->node_id, peer, (unsigned long long)off, (unsigned long long)o->size,
                      err.msg);
            res = DAIS_SYNC_ABORTED;
            break;
        }
        off += n;
        sent += n;
        atomic_fetch_add(&s->bytes_sent, n);
        dais_counter_add(s->m_bytes, n);
        if (s->cfg.rate_limit > 0 && !final)
            pace(s, t0 + (uint64_t)((double)sent * 1e9 / (double)s->cfg.rate_limit));
    }
    free(buf);
    if (res == DAIS_SYNC_OK) {
        double secs = (double)(dais_now_ns() - t0) / 1e9;
        DAIS_INFO("model sync: sent '%s' to %s (%s): %.1f MB from offset %llu of %.1f MB in "
                  "%.2f s (%.0f MB/s)",
                  o->name, q->node_id, peer, (double)sent / 1e6, (unsigned long long)q->offset,
                  (double)o->size / 1e6, secs, secs > 0 ? (double)sent / 1e6 / secs : 0.0);
        linger_close_wait(fd, LINGER_MS);
    }
    return res;
}

/* Serves one connection: request, checks, stream. Returns its outcome. */
static enum dais_sync_result serve(dais_modelstore *s, int fd, const char *peer)
{
    dais_frame_limits lim = {.max_json = REQUEST_JSON_MAX, .max_bin = 0};
    dais_msg *m = NULL;
    dais_err err;
    dais_err_clear(&err);
    int rc = dais_frame_fd_read(
        fd, &lim, dais_now_ns() + (uint64_t)s->cfg.io_timeout_ms * 1000000ull, &m, &err);
    if (rc != 0) {
        if (stopping(s)) return DAIS_SYNC_ABORTED;
        if (rc == DAIS_ECLOSED) /* a port check, or a worker that gave up: not worth a warning */
            DAIS_DEBUG("model sync: %s: closed without a request: %s", peer, err.msg);
        else
            DAIS_WARN("model sync: %s: no valid request: %s", peer, err.msg);
        return DAIS_SYNC_PROTO;
    }
    dais_msg_sync_req q;
    char text[DAIS_TEXT_MAX + 1];
    enum dais_sync_result res;
    if (m->type != DAIS_MSG_MODEL_SYNC_REQUEST) {
        snprintf(text, sizeof(text), "expected MODEL_SYNC_REQUEST, got %s",
                 dais_msg_type_name(m->type));
        send_error(s, fd, m->source, m->id, "proto", text);
        DAIS_WARN("model sync: %s: %s", peer, text);
        dais_msg_free(m);
        return DAIS_SYNC_PROTO;
    }
    if (dais_sync_req_decode(m, &q, &err) != 0) {
        send_error(s, fd, m->source, m->id, "proto", err.msg);
        DAIS_WARN("model sync: %s: malformed MODEL_SYNC_REQUEST: %s", peer, err.msg);
        dais_msg_free(m);
        return DAIS_SYNC_PROTO;
    }
    char in_reply_to[37];
    snprintf(in_reply_to, sizeof(in_reply_to), "%s", m->id);
    dais_msg_free(m);
    if (q.protocol_version != DAIS_PROTO_VERSION) {
        snprintf(text, sizeof(text), "protocol_version %u is not served (%d is)",
                 q.protocol_version, DAIS_PROTO_VERSION);
        send_error(s, fd, q.node_id, in_reply_to, "unsupported", text);
        DAIS_WARN("model sync: %s (%s): %s", q.node_id, peer, text);
        return DAIS_SYNC_UNSUPPORTED;
    }
    char subject[512];
    enum dais_auth_verdict v = DAIS_AUTH_MALFORMED;
    if (dais_sync_auth_subject_layers(q.node_id, q.model, q.offset, q.layer_first, q.layer_last,
                                      subject, sizeof(subject)) == 0) {
        pthread_mutex_lock(&s->mu);
        v = dais_auth_verify_discovery(s->token, s->cfg.token_len, subject, &q.auth, dais_wall_ms(),
                                       s->cfg.auth_window_ms, s->replay);
        pthread_mutex_unlock(&s->mu);
    }
    const char *code;
    res = auth_result(v, &code);
    if (res != DAIS_SYNC_OK) {
        snprintf(text, sizeof(text), "request for '%s' refused: %s", q.model, code);
        send_error(s, fd, q.node_id, in_reply_to, code, text);
        DAIS_WARN("model sync: %s (%s): %s", q.node_id, peer, text);
        return res;
    }
    opened o;
    rc = resolve_open(s, q.model, &o, &err);
    if (rc != 0) {
        if (rc == DAIS_ECANCELLED) return DAIS_SYNC_ABORTED;
        bool unknown = rc == DAIS_ENOTFOUND;
        send_error(s, fd, q.node_id, in_reply_to, unknown ? "unknown_model" : "internal",
                   unknown ? err.msg : "the model file cannot be read");
        DAIS_WARN("model sync: %s (%s): %s", q.node_id, peer, err.msg);
        return unknown ? DAIS_SYNC_UNKNOWN_MODEL : DAIS_SYNC_ERROR;
    }
    if (q.layer_last > 0 && (rc = open_shard(s, &o, q.layer_first, q.layer_last, &err)) != 0) {
        close(o.fd);
        if (rc == DAIS_ECANCELLED) return DAIS_SYNC_ABORTED;
        /* A range or a file the engine refuses will not change by retrying: bad_request. */
        bool bad = rc == DAIS_EINVAL || rc == DAIS_EFORMAT || rc == DAIS_EUNSUPPORTED;
        send_error(s, fd, q.node_id, in_reply_to, bad ? "bad_request" : "internal",
                   bad ? err.msg : "the shard file cannot be made");
        DAIS_WARN("model sync: %s (%s): layers [%d, %d) of '%s': %s", q.node_id, peer,
                  (int)q.layer_first, (int)q.layer_last, q.model, err.msg);
        return bad ? DAIS_SYNC_BAD_REQUEST : DAIS_SYNC_ERROR;
    }
    if (q.offset > o.size) {
        snprintf(text, sizeof(text), "offset %llu is beyond the size %llu of '%s'",
                 (unsigned long long)q.offset, (unsigned long long)o.size, o.name);
        send_error(s, fd, q.node_id, in_reply_to, "bad_request", text);
        DAIS_WARN("model sync: %s (%s): %s", q.node_id, peer, text);
        close(o.fd);
        return DAIS_SYNC_BAD_REQUEST;
    }
    res = stream(s, fd, peer, &q, &o);
    close(o.fd);
    return res;
}

static void *transfer_main(void *arg)
{
    slot *sl = arg;
    dais_modelstore *s = sl->s;
    enum dais_sync_result r = serve(s, sl->fd, sl->peer);
    count(s, r);
    pthread_mutex_lock(&s->mu);
    close(sl->fd);
    sl->fd = -1;
    sl->state = SLOT_DONE;
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_sub(&s->active, 1);
    return NULL;
}

/* ---- the acceptor ---------------------------------------------------------------------------- */

/* Joins finished transfer threads and frees their slots. Under s->mu: a DONE thread no longer
 * takes the lock, so the join cannot wait for us. */
static void reap(dais_modelstore *s)
{
    for (uint32_t i = 0; i < s->cfg.max_transfers; i++) {
        if (s->slots[i].state != SLOT_DONE) continue;
        pthread_join(s->slots[i].th, NULL);
        s->slots[i].state = SLOT_FREE;
    }
}

static void peer_text(const struct sockaddr_storage *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
    }
    snprintf(out, cap, "%s:%u", host, port);
}

static void take(dais_modelstore *s, int fd, const char *peer)
{
    pthread_mutex_lock(&s->mu);
    reap(s);
    slot *sl = NULL;
    for (uint32_t i = 0; i < s->cfg.max_transfers && sl == NULL; i++)
        if (s->slots[i].state == SLOT_FREE) sl = &s->slots[i];
    if (sl != NULL) {
        sl->state = SLOT_RUNNING;
        sl->fd = fd;
        snprintf(sl->peer, sizeof(sl->peer), "%s", peer);
        atomic_fetch_add(&s->active, 1);
        if (pthread_create(&sl->th, NULL, transfer_main, sl) != 0) {
            sl->state = SLOT_FREE;
            sl->fd = -1;
            atomic_fetch_sub(&s->active, 1);
            sl = NULL;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (sl != NULL) return;
    char text[128];
    snprintf(text, sizeof(text), "%u model downloads are running; retry later",
             s->cfg.max_transfers);
    send_error(s, fd, "worker", NULL, "busy", text);
    DAIS_WARN("model sync: %s: busy (%s)", peer, text);
    /* No lingering here (the acceptor must not wait for peers): what already arrived is read
     * so the close is a clean one; a worker that loses the answer anyway just retries. */
    shutdown(fd, SHUT_WR);
    char buf[4096];
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
    }
    close(fd);
    count(s, DAIS_SYNC_BUSY);
}

static void *acceptor_main(void *arg)
{
    dais_modelstore *s = arg;
    while (!stopping(s)) {
        struct pollfd p[2] = {{.fd = s->lfd, .events = POLLIN, .revents = 0},
                              {.fd = s->wake[0], .events = POLLIN, .revents = 0}};
        int n = poll(p, 2, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            DAIS_ERROR("model store: poll: %s", strerror(errno));
            break;
        }
        if (stopping(s) || p[1].revents != 0) break;
        if ((p[0].revents & POLLIN) == 0) continue;
        struct sockaddr_storage sa;
        memset(&sa, 0, sizeof(sa));
        socklen_t sl = sizeof(sa);
        int fd = accept4(s->lfd, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                DAIS_WARN("model store: accept: %s", strerror(errno));
                struct timespec ts = {0, 100000000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        char peer[64];
        peer_text(&sa, peer, sizeof(peer));
        take(s, fd, peer);
    }
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static int listen_on(dais_modelstore *s, dais_err *err)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)s->cfg.port);
    int g = getaddrinfo(s->addr, port, &hints, &res);
    if (g != 0)
        return dais_err_set(err, DAIS_EINVAL, "sync address %s: %s", s->addr, gai_strerror(g));
    int rc = DAIS_EIO, last = 0;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 64) != 0) {
            last = errno;
            close(fd);
            continue;
        }
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        socklen_t sl = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
            s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
        s->lfd = fd;
        rc = 0;
        break;
    }
    freeaddrinfo(res);
    if (rc != 0)
        return dais_err_set(err, DAIS_EIO, "cannot listen on %s:%u (model sync): %s", s->addr,
                            (unsigned)s->cfg.port, strerror(last));
    return 0;
}

static void metrics_init(dais_modelstore *s)
{
    dais_metrics_registry *r = s->cfg.metrics;
    if (r == NULL) return;
    static const char *const labels[1] = {"result"};
    dais_metric_family *f = dais_metrics_family_new(
        r, DAIS_METRIC_COUNTER, DAIS_M_MODEL_SYNC_REQUESTS,
        "Model sync connections (port 8890) by outcome: ok, or why not", 1, labels, 0, NULL);
    for (int i = 0; i < DAIS_SYNC__COUNT; i++) {
        const char *v[1] = {result_names[i]};
        s->m_results[i] = dais_counter_child(f, v);
    }
    s->m_bytes = dais_counter_new(r, DAIS_M_MODEL_SYNC_BYTES,
                                  "Model file bytes sent to workers on the sync port");
}

dais_modelstore *dais_modelstore_start(const dais_modelstore_config *c, dais_err *err)
{
    if (c->dir == NULL || c->dir[0] == '\0' || c->addr == NULL || c->node_id == NULL ||
        c->token == NULL || c->token_len == 0 || c->token_len > 1024 || c->max_transfers == 0 ||
        c->chunk_size == 0 || c->chunk_size > DAIS_FRAME_DEFAULT_MAX_BIN || c->io_timeout_ms == 0) {
        dais_err_set(err, DAIS_EINVAL, "model store: bad configuration");
        return NULL;
    }
    dais_modelstore *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "no memory for the model store");
        return NULL;
    }
    s->cfg = *c;
    s->lfd = -1;
    s->wake[0] = s->wake[1] = -1;
    atomic_init(&s->stopping, false);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->hash_mu, NULL);
    pthread_mutex_init(&s->shard_mu, NULL);
    if ((size_t)snprintf(s->dir, sizeof(s->dir), "%s", c->dir) >= sizeof(s->dir) ||
        (size_t)snprintf(s->addr, sizeof(s->addr), "%s", c->addr) >= sizeof(s->addr) ||
        (size_t)snprintf(s->node_id, sizeof(s->node_id), "%s", c->node_id) >= sizeof(s->node_id)) {
        dais_err_set(err, DAIS_EINVAL, "model store: a path or name is too long");
        goto fail;
    }
    /* strip trailing slashes for tidy paths in the log */
    for (size_t n = strlen(s->dir); n > 1 && s->dir[n - 1] == '/'; n--)
        s->dir[n - 1] = '\0';
    memcpy(s->token, c->token, c->token_len);
    s->cfg.dir = s->dir;
    s->cfg.addr = s->addr;
    s->cfg.node_id = s->node_id;
    s->cfg.token = s->token;
    s->slots = calloc(c->max_transfers, sizeof(*s->slots));
    s->replay = dais_replay_cache_new(REPLAY_MAX, c->auth_window_ms);
    if (s->slots == NULL || s->replay == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "no memory for the model store");
        goto fail;
    }
    for (uint32_t i = 0; i < c->max_transfers; i++) {
        s->slots[i].s = s;
        s->slots[i].fd = -1;
    }
    served *v;
    size_t n;
    if (scan(s, &v, &n, err) != 0) goto fail;
    char names[1024];
    names_text(v, n, names, sizeof(names));
    free(v);
    if (listen_on(s, err) != 0) goto fail;
    if (pipe2(s->wake, O_CLOEXEC) != 0) {
        dais_err_set(err, DAIS_EIO, "model store: pipe: %s", strerror(errno));
        goto fail;
    }
    metrics_init(s);
    if (pthread_create(&s->acceptor, NULL, acceptor_main, s) != 0) {
        dais_err_set(err, DAIS_EINTERNAL, "model store: cannot start its thread");
        goto fail;
    }
    s->acceptor_started = true;
    DAIS_INFO("model store: serving %zu model%s from %s on %s:%u (sync port; %u downloads at "
              "once, %u-byte chunks%s): %s",
              n, n == 1 ? "" : "s", s->dir, s->addr, (unsigned)s->port, c->max_transfers,
              c->chunk_size, c->rate_limit > 0 ? ", rate-limited" : "", names);
    return s;
fail:
    dais_modelstore_stop(s);
    return NULL;
}

uint16_t dais_modelstore_port(const dais_modelstore *s)
{
    return s != NULL ? s->port : 0;
}

void dais_modelstore_get_stats(dais_modelstore *s, dais_modelstore_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->bytes_sent = atomic_load(&s->bytes_sent);
    out->hashes_computed = atomic_load(&s->hashes);
    out->active = atomic_load(&s->active);
    for (int i = 0; i < DAIS_SYNC__COUNT; i++)
        out->results[i] = atomic_load(&s->results[i]);
}

void dais_modelstore_stop(dais_modelstore *s)
{
    if (s == NULL) return;
    atomic_store(&s->stopping, true);
    if (s->acceptor_started) {
        ssize_t w;
        do {
            w = write(s->wake[1], "x", 1);
        } while (w < 0 && errno == EINTR);
        pthread_join(s->acceptor, NULL);
    }
    if (s->slots != NULL) {
        /* Wake every transfer blocked on its socket; they see `stopping` and end. */
        pthread_mutex_lock(&s->mu);
        for (uint32_t i = 0; i < s->cfg.max_transfers; i++)
            if (s->slots[i].state == SLOT_RUNNING && s->slots[i].fd >= 0)
                shutdown(s->slots[i].fd, SHUT_RDWR);
        pthread_mutex_unlock(&s->mu);
        /* No new slot is taken now (the acceptor is gone); join each one in use. */
        for (uint32_t i = 0; i < s->cfg.max_transfers; i++) {
            pthread_mutex_lock(&s->mu);
            bool used = s->slots[i].state != SLOT_FREE;
            pthread_mutex_unlock(&s->mu);
            if (used) pthread_join(s->slots[i].th, NULL);
        }
    }
    if (s->lfd >= 0) close(s->lfd);
    if (s->wake[0] >= 0) close(s->wake[0]);
    if (s->wake[1] >= 0) close(s->wake[1]);
    dais_replay_cache_free(s->replay);
    free(s->slots);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->hash_mu);
    remove_shards(s);
    pthread_mutex_destroy(&s->shard_mu);
    memset(s->token, 0, sizeof(s->token));
    free(s);
}
