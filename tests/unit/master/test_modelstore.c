/*
 * The master's model store (master/modelstore.h) on a real loopback socket, with a fake
 * worker speaking the sync protocol: served names, downloads from any offset in chunks, by
 * name and by hash, the hash cache, every refusal (offset beyond the size, unknown model,
 * wrong token, replay, clock skew, version, malformed request), busy beyond max_transfers,
 * idle peers dropped, and a stop that ends a transfer in progress; shard files asked for with
 * `layers` (stories260K, from DAIS_SHARED).
 */
#include "common/clock.h"
#include "engine/shard.h"
#include "master/modelstore.h"
#include "proto/auth.h"
#include "proto/frame_fd.h"
#include "proto/messages.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
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

#define TOKEN "store-test-token"

static char g_dir[256];

static void write_file(const char *name, const uint8_t *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void sha_hex(const uint8_t *data, size_t len, char out[65])
{
    unsigned char dg[32];
    unsigned int dl = 0;
    EVP_Digest(data, len, dg, &dl, EVP_sha256(), NULL);
    dais_hex_encode(dg, 32, out);
}

static uint8_t g_a[10000]; /* a.gguf */
static char g_sha_a[65], g_sha_b[65];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/dais-modelstore-test-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    for (size_t i = 0; i < sizeof(g_a); i++)
        g_a[i] = (uint8_t)(i * 31 + (i >> 8));
    write_file("a.gguf", g_a, sizeof(g_a));
    write_file("b.gguf", (const uint8_t *)"bbb", 3);
    write_file(".hidden.gguf", (const uint8_t *)"h", 1);
    write_file("notes.txt", (const uint8_t *)"n", 1);
    write_file(".gguf", (const uint8_t *)"n", 1);
    char sub[512];
    snprintf(sub, sizeof(sub), "%s/dir.gguf", g_dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    sha_hex(g_a, sizeof(g_a), g_sha_a);
    sha_hex((const uint8_t *)"bbb", 3, g_sha_b);
    return 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static dais_modelstore *start(uint32_t transfers, uint32_t chunk, uint32_t timeout_ms,
                              uint64_t rate)
{
    dais_modelstore_config c;
    dais_modelstore_config_default(&c);
    c.dir = g_dir;
    c.addr = "127.0.0.1";
    c.port = 0;
    c.node_id = "master";
    c.token = TOKEN;
    c.token_len = strlen(TOKEN);
    c.max_transfers = transfers;
    c.chunk_size = chunk;
    c.io_timeout_ms = timeout_ms;
    c.rate_limit = rate;
    dais_err err;
    dais_modelstore *s = dais_modelstore_start(&c, &err);
    if (s == NULL) fail_msg("start: %s", err.msg);
    assert_true(dais_modelstore_port(s) > 0);
    return s;
}

/* ---- the fake worker ------------------------------------------------------------------------ */

static int fw_connect(dais_modelstore *s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(dais_modelstore_port(s))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void fw_send_req(int fd, const dais_msg_sync_req *q)
{
    dais_msg *m = dais_msg_new(DAIS_MSG_MODEL_SYNC_REQUEST, q->node_id, "master");
    assert_int_equal(dais_sync_req_encode(q, m), 0);
    dais_err err;
    assert_int_equal(dais_frame_fd_write(fd, m, NULL, 0, NULL, dais_now_ns() + 5000000000ull, &err),
                     0);
    dais_msg_free(m);
}

static void make_req(dais_msg_sync_req *q, const char *model, uint64_t offset, const char *token,
                     int64_t ts_ms)
{
    memset(q, 0, sizeof(*q));
    snprintf(q->node_id, sizeof(q->node_id), "w1");
    snprintf(q->model, sizeof(q->model), "%s", model);
    q->protocol_version = DAIS_PROTO_VERSION;
    q->offset = offset;
    char subject[512];
    assert_int_equal(dais_sync_auth_subject("w1", model, offset, subject, sizeof(subject)), 0);
    assert_int_equal(dais_auth_make_discovery(token, strlen(token), subject, ts_ms, &q->auth), 0);
}

/* Connects and asks for model at offset with the right token. */
static int fw_ask(dais_modelstore *s, const char *model, uint64_t offset)
{
    int fd = fw_connect(s);
    dais_msg_sync_req q;
    make_req(&q, model, offset, TOKEN, dais_wall_ms());
    fw_send_req(fd, &q);
    return fd;
}

/* The next frame, or NULL when the store closed the connection. */
static dais_msg *fw_read(int fd)
{
    dais_msg *m = NULL;
    dais_err err;
    int rc = dais_frame_fd_read(fd, NULL, dais_now_ns() + 10000000000ull, &m, &err);
    if (rc == DAIS_ECLOSED) return NULL;
    if (rc != 0) fail_msg("read: %s", err.msg);
    return m;
}

/* Expects ERROR `code` whose message holds `needle`, then the close. */
static void fw_expect_error(int fd, const char *code, const char *needle)
{
    dais_msg *m = fw_read(fd);
    assert_non_null(m);
    assert_int_equal(m->type, DAIS_MSG_ERROR);
    dais_msg_error e;
    dais_err err;
    assert_int_equal(dais_error_decode(m, &e, &err), 0);
    if (strcmp(e.code, code) != 0 || (needle != NULL && strstr(e.message, needle) == NULL))
        fail_msg("expected %s (%s), got %s: %s", code, needle ? needle : "", e.code, e.message);
    dais_msg_free(m);
    assert_null(fw_read(fd));
    close(fd);
}

/* Reads chunks to the final one into buf; checks every chunk's fields. Returns the chunks. */
static int fw_download(int fd, const char *model, const char *sha, uint64_t size, uint64_t offset,
                       uint32_t chunk, uint8_t *buf)
{
    int n = 0;
    uint64_t pos = offset;
    for (;;) {
        dais_msg *m = fw_read(fd);
        assert_non_null(m);
        dais_msg_sync_chunk c;
        dais_err err;
        if (dais_sync_chunk_decode(m, &c, &err) != 0) fail_msg("chunk: %s", err.msg);
        assert_string_equal(c.model, model);
        assert_string_equal(c.sha256, sha);
        assert_true(c.size == size);
        assert_true(c.offset == pos);
        assert_true(c.len <= chunk);
        assert_string_equal(m->target, "w1");
        if (c.len > 0) memcpy(buf + pos, c.data, c.len);
        pos += c.len;
        n++;
        bool final = c.final;
        dais_msg_free(m);
        if (final) break;
    }
    assert_true(pos == size);
    assert_null(fw_read(fd)); /* then the store closes */
    close(fd);
    return n;
}

static void wait_results(dais_modelstore *s, enum dais_sync_result r, uint64_t want)
{
    dais_modelstore_stats st;
    for (int i = 0; i < 500; i++) {
        dais_modelstore_get_stats(s, &st);
        if (st.results[r] >= want) return;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    fail_msg("result %s stayed at %llu (wanted %llu)", dais_sync_result_name(r),
             (unsigned long long)st.results[r], (unsigned long long)want);
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_names_and_downloads(void **state)
{
    (void)state;
    dais_modelstore *s = start(4, 4096, 5000, 0);
    char names[256];
    assert_int_equal(dais_modelstore_names(s, names, sizeof(names)), 2);
    assert_string_equal(names, "'a', 'b'");

    uint8_t got[sizeof(g_a)];
    memset(got, 0, sizeof(got));
    /* the whole file, in 4096-byte chunks */
    int n = fw_download(fw_ask(s, "a", 0), "a", g_sha_a, sizeof(g_a), 0, 4096, got);
    assert_int_equal(n, 3);
    assert_memory_equal(got, g_a, sizeof(g_a));
    /* resumed from the middle */
    memset(got, 0, sizeof(got));
    n = fw_download(fw_ask(s, "a", 5000), "a", g_sha_a, sizeof(g_a), 5000, 4096, got);
    assert_int_equal(n, 2);
    assert_memory_equal(got + 5000, g_a + 5000, sizeof(g_a) - 5000);
    /* from the end: one empty final chunk with the size and hash (the cache check) */
    n = fw_download(fw_ask(s, "a", sizeof(g_a)), "a", g_sha_a, sizeof(g_a), sizeof(g_a), 4096, got);
    assert_int_equal(n, 1);
    /* by hash: the served name comes back */
    uint8_t b[3];
    n = fw_download(fw_ask(s, g_sha_b, 0), "b", g_sha_b, 3, 0, 4096, b);
    assert_memory_equal(b, "bbb", 3);
    wait_results(s, DAIS_SYNC_OK, 4);
    dais_modelstore_stats st;
    dais_modelstore_get_stats(s, &st);
    assert_true(st.bytes_sent == sizeof(g_a) + (sizeof(g_a) - 5000) + 3);
    /* resolve (what the startup log and a request see) */
    char name[129], sha[65];
    uint64_t size;
    dais_err err;
    assert_int_equal(dais_modelstore_resolve(s, g_sha_a, name, sha, &size, &err), 0);
    assert_string_equal(name, "a");
    assert_true(size == sizeof(g_a));
    assert_int_equal(dais_modelstore_resolve(s, "hidden", name, sha, &size, &err), DAIS_ENOTFOUND);
    assert_int_equal(dais_modelstore_resolve(s, ".hidden", name, sha, &size, &err), DAIS_ENOTFOUND);
    assert_int_equal(dais_modelstore_resolve(s, "dir", name, sha, &size, &err), DAIS_ENOTFOUND);
    assert_non_null(strstr(err.msg, "'a', 'b'"));
    dais_modelstore_stop(s);
}

static void test_hash_cache(void **state)
{
    (void)state;
    dais_modelstore *s = start(2, 65536, 5000, 0);
    char name[129], sha[65];
    uint64_t size;
    dais_err err;
    dais_modelstore_stats st;
    assert_int_equal(dais_modelstore_resolve(s, "a", name, sha, &size, &err), 0);
    assert_string_equal(sha, g_sha_a);
    uint8_t got[sizeof(g_a)];
    fw_download(fw_ask(s, "a", 0), "a", g_sha_a, sizeof(g_a), 0, 65536, got);
    fw_download(fw_ask(s, "a", 0), "a", g_sha_a, sizeof(g_a), 0, 65536, got);
    dais_modelstore_get_stats(s, &st);
    assert_int_equal(st.hashes_computed, 1); /* once per file */
    /* A replaced file (new content, new mtime) is hashed again. */
    uint8_t c2[4000];
    memset(c2, 0x5a, sizeof(c2));
    write_file("c.gguf", c2, sizeof(c2));
    char sha_c[65];
    sha_hex(c2, sizeof(c2), sha_c);
    assert_int_equal(dais_modelstore_resolve(s, "c", name, sha, &size, &err), 0);
    assert_string_equal(sha, sha_c);
    memset(c2, 0x5b, sizeof(c2));
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL); /* a later mtime */
    write_file("c.gguf", c2, sizeof(c2));
    sha_hex(c2, sizeof(c2), sha_c);
    assert_int_equal(dais_modelstore_resolve(s, "c", name, sha, &size, &err), 0);
    assert_string_equal(sha, sha_c);
    dais_modelstore_get_stats(s, &st);
    assert_int_equal(st.hashes_computed, 3);
    char path[512];
    snprintf(path, sizeof(path), "%s/c.gguf", g_dir);
    unlink(path);
    dais_modelstore_stop(s);
}

static void test_refusals(void **state)
{
    (void)state;
    dais_modelstore *s = start(4, 4096, 5000, 0);
    /* offset beyond the size */
    fw_expect_error(fw_ask(s, "a", sizeof(g_a) + 1), "bad_request", "beyond the size");
    /* unknown model: the message lists what is served */
    fw_expect_error(fw_ask(s, "zzz", 0), "unknown_model", "served: 'a', 'b'");
    fw_expect_error(
        fw_ask(s, "0000000000000000000000000000000000000000000000000000000000000000", 0),
        "unknown_model", "'a', 'b'");
    /* wrong token */
    dais_msg_sync_req q;
    int fd = fw_connect(s);
    make_req(&q, "a", 0, "not-the-token", dais_wall_ms());
    fw_send_req(fd, &q);
    fw_expect_error(fd, "bad_token", NULL);
    /* a proof for another offset (the offset was changed on the way) */
    fd = fw_connect(s);
    make_req(&q, "a", 0, TOKEN, dais_wall_ms());
    q.offset = 5;
    fw_send_req(fd, &q);
    fw_expect_error(fd, "bad_token", NULL);
    /* replay: the same proof twice */
    make_req(&q, "b", 0, TOKEN, dais_wall_ms());
    uint8_t b[3];
    fd = fw_connect(s);
    fw_send_req(fd, &q);
    fw_download(fd, "b", g_sha_b, 3, 0, 4096, b);
    fd = fw_connect(s);
    fw_send_req(fd, &q);
    fw_expect_error(fd, "replay", NULL);
    /* clock skew (window 60 s) */
    fd = fw_connect(s);
    make_req(&q, "a", 0, TOKEN, dais_wall_ms() - 120000);
    fw_send_req(fd, &q);
    fw_expect_error(fd, "clock_skew", NULL);
    /* another protocol version */
    fd = fw_connect(s);
    make_req(&q, "a", 0, TOKEN, dais_wall_ms());
    q.protocol_version = 2;
    fw_send_req(fd, &q);
    fw_expect_error(fd, "unsupported", "protocol_version 2");
    /* a message of another type */
    fd = fw_connect(s);
    dais_msg *hb = dais_msg_new(DAIS_MSG_HEARTBEAT, "w1", "master");
    dais_err err;
    assert_int_equal(dais_frame_fd_write(fd, hb, NULL, 0, NULL, 0, &err), 0);
    dais_msg_free(hb);
    fw_expect_error(fd, "proto", "expected MODEL_SYNC_REQUEST");
    /* a malformed request: named field */
    fd = fw_connect(s);
    dais_msg *m = dais_msg_new(DAIS_MSG_MODEL_SYNC_REQUEST, "w1", "master");
    make_req(&q, "a", 0, TOKEN, dais_wall_ms());
    assert_int_equal(dais_sync_req_encode(&q, m), 0);
    json_object_set_new(m->data, "offset", json_integer(-1));
    assert_int_equal(dais_frame_fd_write(fd, m, NULL, 0, NULL, 0, &err), 0);
    dais_msg_free(m);
    fw_expect_error(fd, "proto", "offset");
    /* garbage: closed without an answer */
    fd = fw_connect(s);
    assert_int_equal(send(fd, "GET / HTTP/1.1\r\n\r\n", 18, MSG_NOSIGNAL), 18);
    assert_null(fw_read(fd));
    close(fd);
    /* an oversized envelope is refused on its header */
    fd = fw_connect(s);
    uint8_t hdr[16];
    dais_frame_header_write(hdr, 1u << 20, 0);
    assert_int_equal(send(fd, hdr, 16, MSG_NOSIGNAL), 16);
    assert_null(fw_read(fd));
    close(fd);

    wait_results(s, DAIS_SYNC_PROTO, 4);
    dais_modelstore_stats st;
    dais_modelstore_get_stats(s, &st);
    assert_int_equal(st.results[DAIS_SYNC_BAD_REQUEST], 1);
    assert_int_equal(st.results[DAIS_SYNC_UNKNOWN_MODEL], 2);
    assert_int_equal(st.results[DAIS_SYNC_BAD_TOKEN], 2);
    assert_int_equal(st.results[DAIS_SYNC_REPLAY], 1);
    assert_int_equal(st.results[DAIS_SYNC_CLOCK_SKEW], 1);
    assert_int_equal(st.results[DAIS_SYNC_UNSUPPORTED], 1);
    assert_int_equal(st.results[DAIS_SYNC_OK], 1);
    assert_true(st.bytes_sent == 3);
    dais_modelstore_stop(s);
}

static void test_busy_idle_and_stop(void **state)
{
    (void)state;
    /* One transfer at once, idle peers dropped after 300 ms. */
    dais_modelstore *s = start(1, 4096, 300, 0);
    int idle = fw_connect(s); /* takes the only slot and says nothing */
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    fw_expect_error(fw_connect(s), "busy", "retry later");
    uint64_t t0 = dais_now_ns();
    assert_null(fw_read(idle)); /* dropped after the timeout */
    uint64_t waited_ms = (dais_now_ns() - t0) / 1000000;
    assert_true(waited_ms < 2000);
    close(idle);
    wait_results(s, DAIS_SYNC_PROTO, 1);
    /* the slot is free again */
    uint8_t got[sizeof(g_a)];
    fw_download(fw_ask(s, "a", 0), "a", g_sha_a, sizeof(g_a), 0, 4096, got);
    dais_modelstore_stop(s);

    /* A slow, rate-limited transfer in progress ends when the store stops. */
    s = start(2, 4096, 5000, 2048);
    int fd = fw_ask(s, "a", 0);
    dais_msg *m = fw_read(fd); /* the first chunk */
    assert_non_null(m);
    assert_int_equal(m->type, DAIS_MSG_MODEL_SYNC_CHUNK);
    dais_msg_free(m);
    t0 = dais_now_ns();
    dais_modelstore_stop(s);
    assert_true((dais_now_ns() - t0) / 1000000 < 1000);
    /* The peer sees the connection end before the file's end. */
    int chunks = 0;
    while ((m = fw_read(fd)) != NULL) {
        chunks++;
        dais_msg_free(m);
    }
    assert_true(chunks < 2);
    close(fd);
}

static void test_bad_config(void **state)
{
    (void)state;
    dais_modelstore_config c;
    dais_modelstore_config_default(&c);
    c.dir = "/nonexistent/dais/models";
    c.addr = "127.0.0.1";
    c.port = 0;
    c.node_id = "master";
    c.token = TOKEN;
    c.token_len = strlen(TOKEN);
    dais_err err;
    assert_null(dais_modelstore_start(&c, &err));
    assert_non_null(strstr(err.msg, "/nonexistent/dais/models"));
    c.dir = g_dir;
    c.token_len = 0;
    assert_null(dais_modelstore_start(&c, &err));
    dais_modelstore_stop(NULL);
}

/* ---- shard files (`layers` in the request) -------------------------------------------------- */

static int fw_ask_layers(dais_modelstore *s, const char *model, uint64_t offset, int32_t first,
                         int32_t last)
{
    int fd = fw_connect(s);
    dais_msg_sync_req q;
    make_req(&q, model, offset, TOKEN, dais_wall_ms());
    q.layer_first = first;
    q.layer_last = last;
    char subject[512];
    assert_int_equal(
        dais_sync_auth_subject_layers("w1", model, offset, first, last, subject, sizeof(subject)),
        0);
    assert_int_equal(
        dais_auth_make_discovery(TOKEN, strlen(TOKEN), subject, dais_wall_ms(), &q.auth), 0);
    fw_send_req(fd, &q);
    return fd;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    rewind(f);
    uint8_t *b = malloc((size_t)n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* A request with layers gets the shard file the engine writes for that range (made once, in a
 * private directory under $TMPDIR that stop removes); a whole-model range gets the file; a
 * range beyond the model or a file the engine cannot load is bad_request. */
static void test_shards(void **state)
{
    (void)state;
    const char *shared = getenv("DAIS_SHARED");
    char src[600], model[600], ref[700], tmpdir[600];
    snprintf(src, sizeof(src), "%s/models/stories260K.gguf", shared ? shared : "../shared");
    if (access(src, R_OK) != 0) skip();
    size_t msize;
    uint8_t *mbytes = read_all(src, &msize);
    write_file("st.gguf", mbytes, msize);
    snprintf(model, sizeof(model), "%s/st.gguf", g_dir);
    snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", g_dir);
    assert_int_equal(mkdir(tmpdir, 0700), 0);
    const char *old_tmp = getenv("TMPDIR");
    char saved[600] = "";
    if (old_tmp != NULL) snprintf(saved, sizeof(saved), "%s", old_tmp);
    setenv("TMPDIR", tmpdir, 1);

    /* The reference: the engine's own shard file of the same range. */
    snprintf(ref, sizeof(ref), "%s/ref.bin", tmpdir);
    dais_err err;
    assert_int_equal(dais_shard_write(model, 2, 5, ref, NULL, &err), 0);
    size_t rsize;
    uint8_t *rbytes = read_all(ref, &rsize);
    unlink(ref);
    char rsha[65], msha[65];
    sha_hex(rbytes, rsize, rsha);
    sha_hex(mbytes, msize, msha);

    dais_modelstore *s = start(2, 64 << 10, 5000, 0);
    uint8_t *buf = malloc(msize);
    assert_non_null(buf);
    for (int round = 0; round < 2; round++) { /* the second is served the file made once */
        memset(buf, 0, msize);
        fw_download(fw_ask_layers(s, "st", 0, 2, 5), "st", rsha, rsize, 0, 64 << 10, buf);
        assert_memory_equal(buf, rbytes, rsize);
    }
    /* resumed, and asked by the source's hash */
    fw_download(fw_ask_layers(s, msha, 1000, 2, 5), "st", rsha, rsize, 1000, 64 << 10, buf);
    assert_memory_equal(buf + 1000, rbytes + 1000, rsize - 1000);
    /* the whole range is the file itself */
    fw_download(fw_ask_layers(s, "st", 0, 0, 5), "st", msha, msize, 0, 64 << 10, buf);
    assert_memory_equal(buf, mbytes, msize);
    fw_expect_error(fw_ask_layers(s, "st", 0, 3, 9), "bad_request", "has 5 layers");
    fw_expect_error(fw_ask_layers(s, "a", 0, 0, 1), "bad_request", NULL);
    /* A proof for the whole file does not pass for a shard. */
    int fd = fw_connect(s);
    dais_msg_sync_req q;
    make_req(&q, "st", 0, TOKEN, dais_wall_ms());
    q.layer_first = 2;
    q.layer_last = 5;
    fw_send_req(fd, &q);
    fw_expect_error(fd, "bad_token", NULL);
    dais_modelstore_stop(s);

    /* stop removed the generated files and their directory */
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", tmpdir);
    assert_int_equal(system(cmd), 0);
    if (saved[0] != '\0')
        setenv("TMPDIR", saved, 1);
    else
        unsetenv("TMPDIR");
    rmdir(tmpdir);
    unlink(model);
    free(buf);
    free(rbytes);
    free(mbytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_downloads),
        cmocka_unit_test(test_hash_cache),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_busy_idle_and_stop),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_shards),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
