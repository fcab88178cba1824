/*
 * The worker's model pull (worker/modelsync.h) against the real model store
 * (master/modelstore.h) on loopback, in one process: a fresh download, a warm cache that is
 * not downloaded again, a resumed .part, a corrupted .part caught by the hash and downloaded
 * again, a stale cached file replaced, a .part longer than the master's file, an explicit
 * --model destination, a master that comes up late, and the refusals: wrong token, unknown
 * model (names listed), a hash that never matches (a fake master: one retry, then an error),
 * a full disk.
 */
#include "common/clock.h"
#include "master/modelstore.h"
#include "proto/auth.h"
#include "proto/frame_fd.h"
#include "proto/messages.h"
#include "worker/modelsync.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define TOKEN "sync-test-token"
#define SIZE  300000

static char g_root[256], g_models[300], g_cache[300];
static uint8_t g_m[SIZE];

static void path_of(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static void write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static size_t read_file(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return (size_t)-1;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void clear_cache(void)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", g_cache, g_cache);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_root, sizeof(g_root), "/tmp/dais-modelsync-test-XXXXXX");
    assert_non_null(mkdtemp(g_root));
    snprintf(g_models, sizeof(g_models), "%s/models", g_root);
    snprintf(g_cache, sizeof(g_cache), "%s/cache", g_root);
    assert_int_equal(mkdir(g_models, 0755), 0);
    assert_int_equal(mkdir(g_cache, 0755), 0);
    for (size_t i = 0; i < SIZE; i++)
        g_m[i] = (uint8_t)(i * 131 + (i >> 9));
    char p[512];
    path_of(p, sizeof(p), g_models, "m.gguf");
    write_file(p, g_m, SIZE);
    path_of(p, sizeof(p), g_models, "other.gguf");
    write_file(p, (const uint8_t *)"other", 5);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_root);
    return system(cmd) == 0 ? 0 : -1;
}

static dais_modelstore *start_store(uint16_t port)
{
    dais_modelstore_config c;
    dais_modelstore_config_default(&c);
    c.dir = g_models;
    c.addr = "127.0.0.1";
    c.port = port;
    c.node_id = "master";
    c.token = TOKEN;
    c.token_len = strlen(TOKEN);
    c.chunk_size = 65536;
    c.io_timeout_ms = 5000;
    dais_err err;
    dais_modelstore *s = dais_modelstore_start(&c, &err);
    if (s == NULL) fail_msg("store: %s", err.msg);
    return s;
}

static void worker_cfg(dais_worker_config *c, uint16_t port, const char *model, const char *token)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->pull_model, sizeof(c->pull_model), "%s", model);
    snprintf(c->model_cache, sizeof(c->model_cache), "%s", g_cache);
    snprintf(c->master_host, sizeof(c->master_host), "127.0.0.1");
    snprintf(c->node_id, sizeof(c->node_id), "w1");
    c->sync_port = port;
    c->token_len = strlen(token);
    memcpy(c->token, token, c->token_len + 1);
    c->retry_base_ms = 20;
    c->retry_max_ms = 100;
    c->register_timeout_ms = 2000;
    c->max_frame_json = 1u << 20;
    c->max_frame_bin = 64u << 20;
}

static uint64_t bytes_sent(dais_modelstore *s)
{
    dais_modelstore_stats st;
    dais_modelstore_get_stats(s, &st);
    return st.bytes_sent;
}

/* Pulls `model` and checks that the file at the returned path is g_m. */
static void pull_ok(dais_modelstore *s, const dais_worker_config *c, const char *want_path)
{
    char path[4200];
    dais_err err;
    dais_err_clear(&err);
    if (dais_modelsync_pull(c, path, sizeof(path), &err) != 0) fail_msg("pull: %s", err.msg);
    assert_string_equal(path, want_path);
    static uint8_t got[SIZE + 16];
    assert_int_equal(read_file(path, got, sizeof(got)), SIZE);
    assert_memory_equal(got, g_m, SIZE);
    char part[4300];
    snprintf(part, sizeof(part), "%s.part", path);
    assert_false(exists(part));
    (void)s;
}

static void test_download_cache_resume(void **state)
{
    (void)state;
    clear_cache();
    dais_modelstore *s = start_store(0);
    dais_worker_config c;
    worker_cfg(&c, dais_modelstore_port(s), "m", TOKEN);
    char dest[512], part[520];
    path_of(dest, sizeof(dest), g_cache, "m.gguf");
    snprintf(part, sizeof(part), "%s.part", dest);

    /* a fresh download */
    pull_ok(s, &c, dest);
    assert_true(bytes_sent(s) == SIZE);
    /* a warm cache: nothing more is sent */
    pull_ok(s, &c, dest);
    assert_true(bytes_sent(s) == SIZE);
    /* an interrupted download: the .part's bytes are not sent again */
    unlink(dest);
    write_file(part, g_m, 100000);
    pull_ok(s, &c, dest);
    assert_true(bytes_sent(s) == 2ull * SIZE - 100000);
    /* a corrupted .part: caught by the hash, deleted, downloaded again from 0 */
    unlink(dest);
    static uint8_t bad[100000];
    memcpy(bad, g_m, sizeof(bad));
    bad[5000] ^= 0xff;
    write_file(part, bad, sizeof(bad));
    uint64_t before = bytes_sent(s);
    pull_ok(s, &c, dest);
    assert_true(bytes_sent(s) == before + (SIZE - 100000) + SIZE);
    /* a stale cached file (same size, other bytes): replaced */
    memcpy(bad, g_m, sizeof(bad));
    static uint8_t stale[SIZE];
    memcpy(stale, g_m, SIZE);
    stale[SIZE - 1] ^= 1;
    write_file(dest, stale, SIZE);
    before = bytes_sent(s);
    pull_ok(s, &c, dest);
    assert_true(bytes_sent(s) == before + SIZE);
    /* a cached file longer than the master's, and a .part longer than it */
    static uint8_t longer[SIZE + 10];
    memcpy(longer, g_m, SIZE);
    write_file(dest, longer, SIZE + 10);
    before = bytes_sent(s);
    pull_ok(s, &c, dest);
    assert_true(bytes_sent(s) == before + SIZE);
    unlink(dest);
    write_file(part, longer, SIZE + 10);
    before = bytes_sent(s);
    pull_ok(s, &c, dest);
    assert_true(bytes_sent(s) == before + SIZE);
    /* by hash, into an explicit --model path in a directory that does not exist yet */
    char sha[65], name[129];
    uint64_t size;
    dais_err err;
    assert_int_equal(dais_modelstore_resolve(s, "m", name, sha, &size, &err), 0);
    worker_cfg(&c, dais_modelstore_port(s), sha, TOKEN);
    snprintf(c.model, sizeof(c.model), "%s/deep/er/mine.gguf", g_root);
    pull_ok(s, &c, c.model);
    dais_modelstore_stop(s);
}

static void test_refusals(void **state)
{
    (void)state;
    clear_cache();
    dais_modelstore *s = start_store(0);
    dais_worker_config c;
    char path[4200];
    dais_err err;
    /* wrong token: a permanent error, at once, nothing written */
    worker_cfg(&c, dais_modelstore_port(s), "m", "wrong-token");
    uint64_t t0 = dais_now_ns();
    assert_int_equal(dais_modelsync_pull(&c, path, sizeof(path), &err), DAIS_EAUTH);
    assert_non_null(strstr(err.msg, "bad_token"));
    assert_true((dais_now_ns() - t0) / 1000000 < 2000);
    assert_true(bytes_sent(s) == 0);
    char dest[512];
    path_of(dest, sizeof(dest), g_cache, "m.gguf");
    assert_false(exists(dest));
    /* unknown model: the served names in the message */
    worker_cfg(&c, dais_modelstore_port(s), "nope", TOKEN);
    assert_int_equal(dais_modelsync_pull(&c, path, sizeof(path), &err), DAIS_ENOTFOUND);
    assert_non_null(strstr(err.msg, "'m', 'other'"));
    /* disk full */
    if (exists("/dev/full")) {
        worker_cfg(&c, dais_modelstore_port(s), "m", TOKEN);
        char part[600];
        snprintf(part, sizeof(part), "%s.part", dest);
        assert_int_equal(symlink("/dev/full", part), 0);
        assert_int_equal(dais_modelsync_pull(&c, path, sizeof(path), &err), DAIS_EIO);
        assert_non_null(strstr(err.msg, "disk full"));
        unlink(part);
    }
    dais_modelstore_stop(s);
}

/* A port free right now (bound, then closed). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t sl = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &sl);
    close(fd);
    return ntohs(a.sin_port);
}

typedef struct pull_job {
    dais_worker_config c;
    char path[4200];
    dais_err err;
    int rc;
} pull_job;

static void *pull_thread(void *arg)
{
    pull_job *j = arg;
    j->rc = dais_modelsync_pull(&j->c, j->path, sizeof(j->path), &j->err);
    return NULL;
}

static void test_master_comes_up_late(void **state)
{
    (void)state;
    clear_cache();
    uint16_t port = free_port();
    static pull_job j;
    worker_cfg(&j.c, port, "m", TOKEN);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, pull_thread, &j), 0);
    struct timespec ts = {0, 300000000};
    nanosleep(&ts, NULL); /* refused connections meanwhile, retried with backoff */
    dais_modelstore *s = start_store(port);
    pthread_join(th, NULL);
    if (j.rc != 0) fail_msg("pull: %s", j.err.msg);
    char dest[512];
    path_of(dest, sizeof(dest), g_cache, "m.gguf");
    assert_string_equal(j.path, dest);
    dais_modelstore_stop(s);
}

/* A fake master that answers every request with the whole file and a wrong hash. */
typedef struct fake {
    int lfd;
    _Atomic int served;
} fake;

static void *fake_master(void *arg)
{
    fake *f = arg;
    for (;;) {
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) return NULL;
        dais_msg *m = NULL;
        dais_err err;
        if (dais_frame_fd_read(fd, NULL, dais_now_ns() + 5000000000ull, &m, &err) == 0) {
            dais_msg_sync_req q;
            if (dais_sync_req_decode(m, &q, &err) == 0) {
                dais_msg_sync_chunk ch = {.size = SIZE, .offset = q.offset, .final = true};
                snprintf(ch.model, sizeof(ch.model), "m");
                memset(ch.sha256, '0', 64);
                ch.data = g_m + q.offset;
                ch.len = (uint32_t)(SIZE - q.offset);
                dais_msg *r = dais_msg_new(DAIS_MSG_MODEL_SYNC_CHUNK, "master", q.node_id);
                assert_int_equal(dais_sync_chunk_encode(&ch, r), 0);
                f->served++; /* before the answer: the pull may end as soon as it has it */
                dais_frame_fd_write(fd, r, NULL, 0, NULL, dais_now_ns() + 5000000000ull, &err);
                dais_msg_free(r);
            }
            dais_msg_free(m);
        }
        close(fd);
    }
}

static void test_hash_never_matches(void **state)
{
    (void)state;
    clear_cache();
    static fake f;
    f.lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(f.lfd, 8), 0);
    socklen_t sl = sizeof(a);
    getsockname(f.lfd, (struct sockaddr *)&a, &sl);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fake_master, &f), 0);
    dais_worker_config c;
    worker_cfg(&c, ntohs(a.sin_port), "m", TOKEN);
    char path[4200];
    dais_err err;
    assert_int_equal(dais_modelsync_pull(&c, path, sizeof(path), &err), DAIS_EFORMAT);
    assert_non_null(strstr(err.msg, "hash mismatch"));
    assert_int_equal(f.served, 2); /* one retry, then the error */
    char part[600];
    snprintf(part, sizeof(part), "%s/m.gguf.part", g_cache);
    assert_false(exists(part));
    shutdown(f.lfd, SHUT_RDWR);
    close(f.lfd);
    pthread_join(th, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_download_cache_resume),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_master_comes_up_late),
        cmocka_unit_test(test_hash_never_matches),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
