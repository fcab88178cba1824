/*
 * Kubernetes API client and discovery thread (see k8s.h; the parser and the diff are in
 * k8s_pods.c).
 *
 * The client makes one blocking HTTPS request per list with libcurl, on a fresh easy handle
 * each time (so a rotated CA file or token is always read anew, and no state from a failed
 * request leaks into the next): TLS 1.2+, peer and host verified against the service-account
 * CA, https only, no redirects, connect and total timeouts, a hard cap on the body size, and
 * the bearer token read from its file on every call.
 *
 * The discovery thread loops: list, report the outcome, wait (poll interval after a success,
 * backoff after a failure, or until poll_now/stop). With an event_base, outcomes cross to the
 * loop thread through a mutex-protected queue and an eventfd the loop watches; without, the
 * callback runs on the discovery thread.
 */
#include "master/k8s.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/metric_names.h"
#include "common/metrics.h"

#define MS  1000000ull
#define SEC (1000 * MS)

#define MAX_URL      2048
#define MAX_PATH_LEN 4096
/* Results waiting for the loop; past this the oldest are dropped (the newest list wins). */
#define MAX_QUEUED 16

/* ---- configuration ------------------------------------------------------------------------- */

void dais_k8s_config_default(dais_k8s_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->poll_interval_ns = 10 * SEC;
    cfg->connect_timeout_ns = 3 * SEC;
    cfg->timeout_ns = 10 * SEC;
    cfg->max_response = DAIS_K8S_MAX_RESPONSE_DEFAULT;
    cfg->max_pods = DAIS_K8S_MAX_PODS_DEFAULT;
    cfg->require_ready = false;
    cfg->retry.base_ns = 1 * SEC;
    cfg->retry.max_ns = 30 * SEC;
    cfg->retry.multiplier = 2.0;
    cfg->retry.max_attempts = 0;
    cfg->retry.deadline_ns = 0;
    cfg->retry.jitter = DAIS_BACKOFF_DECORRELATED; /* never sooner than base */
}

const char *dais_k8s_reason_name(enum dais_k8s_reason r)
{
    static const char *const names[DAIS_K8S_R_COUNT] = {
        [DAIS_K8S_OK] = "ok",
        [DAIS_K8S_R_CONFIG] = "config",
        [DAIS_K8S_R_CONNECT] = "connect",
        [DAIS_K8S_R_TLS] = "tls",
        [DAIS_K8S_R_TIMEOUT] = "timeout",
        [DAIS_K8S_R_UNAUTHORIZED] = "unauthorized",
        [DAIS_K8S_R_FORBIDDEN] = "forbidden",
        [DAIS_K8S_R_THROTTLED] = "throttled",
        [DAIS_K8S_R_SERVER] = "server_error",
        [DAIS_K8S_R_HTTP] = "http_status",
        [DAIS_K8S_R_TOOBIG] = "too_big",
        [DAIS_K8S_R_MALFORMED] = "malformed",
        [DAIS_K8S_R_TRANSPORT] = "transport",
    };
    if ((unsigned)r >= DAIS_K8S_R_COUNT) return "unknown";
    return names[r];
}

struct dais_k8s_client {
    dais_k8s_config cfg; /* string members point at the owned copies below */
    char *api_url;
    char *token_path;
    char *ca_path;
    char *ns;
    char *selector_text;
    char *list_url;
    dais_k8s_selector *selector;
};

void dais_k8s_client_free(dais_k8s_client *c)
{
    if (c == NULL) return;
    free(c->api_url);
    free(c->token_path);
    free(c->ca_path);
    free(c->ns);
    free(c->selector_text);
    free(c->list_url);
    dais_k8s_selector_free(c->selector);
    free(c);
}

/* Reads a small file whole (at most `max` bytes) into a NUL-terminated buffer, trailing
 * whitespace removed. Returns 0, DAIS_EIO (unreadable, not a regular file) or DAIS_ETOOBIG. */
static int read_small_file(const char *path, size_t max, char **out, dais_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return dais_err_set(err, DAIS_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dais_err_set(err, DAIS_EIO, "%s is not a regular file", path);
    }
    char *buf = malloc(max + 1);
    if (buf == NULL) {
        close(fd);
        return dais_err_set(err, DAIS_ENOMEM, "out of memory reading %s", path);
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, max + 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return dais_err_set(err, DAIS_EIO, "cannot read %s: %s", path, strerror(e));
        }
        if (r == 0) break;
        len += (size_t)r;
        if (len > max) {
            close(fd);
            free(buf);
            return dais_err_set(err, DAIS_ETOOBIG, "%s is larger than %zu bytes", path, max);
        }
    }
    close(fd);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                       buf[len - 1] == '\t'))
        len--;
    buf[len] = '\0';
    *out = buf;
    return 0;
}

static bool valid_ns_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-') return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* "https://host[:port]" with nothing after the authority but an optional '/'. */
static int check_api_url(const char *url, dais_err *err)
{
    size_t n = strnlen(url, MAX_URL);
    if (n >= MAX_URL) return dais_err_set(err, DAIS_EINVAL, "k8s: API URL too long");
    if (strncmp(url, "https://", 8) != 0 || n == 8)
        return dais_err_set(err, DAIS_EINVAL, "k8s: API URL must be https://host[:port]: %.80s",
                            url);
    for (size_t i = 8; i < n; i++) {
        char ch = url[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == ':' || ch == '[' ||
                  ch == ']' || (ch == '/' && i == n - 1);
        if (!ok)
            return dais_err_set(err, DAIS_EINVAL, "k8s: API URL has an invalid character at %zu",
                                i);
    }
    return 0;
}

/* The URL from KUBERNETES_SERVICE_HOST/_PORT (what in-cluster clients use). */
static int url_from_env(char **out, dais_err *err)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    *out = NULL;
    if (host == NULL || host[0] == '\0')
        return dais_err_set(err, DAIS_EINVAL,
                            "k8s: not running in a cluster (KUBERNETES_SERVICE_HOST is unset) and "
                            "no API URL configured");
    if (port == NULL || port[0] == '\0') port = "443";
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (errno != 0 || *end != '\0' || p < 1 || p > 65535)
        return dais_err_set(err, DAIS_EINVAL, "k8s: KUBERNETES_SERVICE_PORT is not a port");
    unsigned char a6[16];
    bool v6 = strchr(host, ':') != NULL;
    if (v6 && inet_pton(AF_INET6, host, a6) != 1)
        return dais_err_set(err, DAIS_EINVAL, "k8s: KUBERNETES_SERVICE_HOST is not an address");
    char url[MAX_URL];
    int w = snprintf(url, sizeof(url), v6 ? "https://[%s]:%ld" : "https://%s:%ld", host, p);
    if (w < 0 || (size_t)w >= sizeof(url))
        return dais_err_set(err, DAIS_EINVAL, "k8s: KUBERNETES_SERVICE_HOST too long");
    int rc = check_api_url(url, err);
    if (rc != 0) return rc;
    *out = strdup(url);
    return *out == NULL ? dais_err_set(err, DAIS_ENOMEM, "k8s: out of memory") : 0;
}

static char *dup_or(const char *s, const char *dflt)
{
    return strdup(s != NULL ? s : dflt);
}

dais_k8s_client *dais_k8s_client_new(const dais_k8s_config *cfg, dais_err *err)
{
    int rc;
    if (cfg == NULL) {
        dais_err_set(err, DAIS_EINVAL, "k8s: no configuration");
        return NULL;
    }
    if (cfg->poll_interval_ns == 0 || cfg->connect_timeout_ns < MS || cfg->timeout_ns < MS) {
        dais_err_set(err, DAIS_EINVAL, "k8s: poll interval must be > 0 and timeouts at least 1 ms");
        return NULL;
    }
    if (dais_backoff_config_check(&cfg->retry, err) != 0) return NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        dais_err_set(err, DAIS_EINVAL, "k8s: libcurl initialisation failed");
        return NULL;
    }
    dais_k8s_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "k8s: out of memory");
        return NULL;
    }
    c->cfg = *cfg;
    if (c->cfg.max_response == 0) c->cfg.max_response = DAIS_K8S_MAX_RESPONSE_DEFAULT;
    if (c->cfg.max_pods == 0) c->cfg.max_pods = DAIS_K8S_MAX_PODS_DEFAULT;

    if (cfg->api_url != NULL) {
        rc = check_api_url(cfg->api_url, err);
        if (rc != 0) goto fail;
        c->api_url = strdup(cfg->api_url);
        if (c->api_url == NULL) goto nomem;
    } else if (url_from_env(&c->api_url, err) != 0) {
        goto fail;
    }
    size_t ul = strlen(c->api_url);
    if (ul > 0 && c->api_url[ul - 1] == '/') c->api_url[ul - 1] = '\0';

    c->token_path = dup_or(cfg->token_path, DAIS_K8S_SA_DIR "/token");
    c->ca_path = dup_or(cfg->ca_path, DAIS_K8S_SA_DIR "/ca.crt");
    c->selector_text = dup_or(cfg->label_selector, "");
    if (c->token_path == NULL || c->ca_path == NULL || c->selector_text == NULL) goto nomem;

    if (cfg->ns != NULL) {
        c->ns = strdup(cfg->ns);
        if (c->ns == NULL) goto nomem;
    } else {
        const char *path = cfg->ns_path != NULL ? cfg->ns_path : DAIS_K8S_SA_DIR "/namespace";
        if (read_small_file(path, 253, &c->ns, err) != 0) goto fail;
    }
    if (!valid_ns_name(c->ns)) {
        dais_err_set(err, DAIS_EINVAL, "k8s: namespace \"%.63s\" is not a DNS-1123 label", c->ns);
        goto fail;
    }
    c->selector = dais_k8s_selector_parse(c->selector_text, err);
    if (c->selector == NULL) goto fail;

    if (access(c->token_path, R_OK) != 0) {
        dais_err_set(err, DAIS_EIO, "k8s: token file %s is not readable: %s", c->token_path,
                     strerror(errno));
        goto fail;
    }
    if (access(c->ca_path, R_OK) != 0) {
        dais_err_set(err, DAIS_EIO, "k8s: CA file %s is not readable: %s", c->ca_path,
                     strerror(errno));
        goto fail;
    }

    char *esc = NULL;
    if (c->selector_text[0] != '\0') {
        esc = curl_easy_escape(NULL, c->selector_text, 0);
        if (esc == NULL) goto nomem;
    }
    size_t need = strlen(c->api_url) + strlen(c->ns) + (esc != NULL ? strlen(esc) : 0) + 64;
    c->list_url = malloc(need);
    if (c->list_url == NULL) {
        curl_free(esc);
        goto nomem;
    }
    snprintf(c->list_url, need, "%s/api/v1/namespaces/%s/pods%s%s", c->api_url, c->ns,
             esc != NULL ? "?labelSelector=" : "", esc != NULL ? esc : "");
    curl_free(esc);

    c->cfg.api_url = c->api_url;
    c->cfg.token_path = c->token_path;
    c->cfg.ca_path = c->ca_path;
    c->cfg.ns = c->ns;
    c->cfg.ns_path = NULL;
    c->cfg.label_selector = c->selector_text;
    return c;
nomem:
    dais_err_set(err, DAIS_ENOMEM, "k8s: out of memory");
fail:
    dais_k8s_client_free(c);
    return NULL;
}

const char *dais_k8s_client_url(const dais_k8s_client *c)
{
    return c->list_url;
}

const char *dais_k8s_client_namespace(const dais_k8s_client *c)
{
    return c->ns;
}

const dais_k8s_config *dais_k8s_client_config(const dais_k8s_client *c)
{
    return &c->cfg;
}

/* ---- one list call ------------------------------------------------------------------------- */

typedef struct body {
    char *data;
    size_t len, cap, max;
    bool too_big;
    bool nomem;
} body;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    body *b = userdata;
    size_t n = size * nmemb;
    if (n > b->max - b->len) {
        b->too_big = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap != 0 ? b->cap : 64 * 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->max + 1) cap = b->max + 1;
        char *d = realloc(b->data, cap);
        if (d == NULL) {
            b->nomem = true;
            return 0;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static int on_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const atomic_int *cancel = clientp;
    return cancel != NULL && atomic_load_explicit(cancel, memory_order_relaxed) != 0;
}

/* A token is sent in a header: only visible ASCII, so it cannot inject a header line. */
static bool valid_token(const char *t)
{
    if (t[0] == '\0') return false;
    for (const char *p = t; *p != '\0'; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) return false;
    return true;
}

static void wipe(void *p, size_t n)
{
    if (p != NULL) explicit_bzero(p, n);
}

/* A short printable sample of an error body: the Status message when it is one. */
static void body_sample(const body *b, char *out, size_t cap)
{
    out[0] = '\0';
    if (b->len == 0) return;
    json_t *j = json_loadb(b->data, b->len, 0, NULL);
    const char *msg = j != NULL ? json_string_value(json_object_get(j, "message")) : NULL;
    const char *src = msg != NULL ? msg : b->data;
    size_t n = msg != NULL ? strlen(msg) : b->len;
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++)
        out[o++] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '.';
    out[o] = '\0';
    json_decref(j);
}

/* Sets *reason (when wanted) and fills err; evaluates to the code. */
#define FAILR(r, code, ...)                                                                        \
    ((reason != NULL ? (void)(*reason = (r)) : (void)0), dais_err_set(err, (code), __VA_ARGS__))

int dais_k8s_list(dais_k8s_client *c, const atomic_int *cancel, dais_k8s_podlist **out,
                  enum dais_k8s_reason *reason, dais_err *err)
{
    *out = NULL;
    if (reason != NULL) *reason = DAIS_K8S_OK;
    int rc;
    char *token = NULL;
    char *auth = NULL;
    size_t auth_len = 0;
    struct curl_slist *hdrs = NULL, *h;
    CURL *e = NULL;
    body b = {.max = c->cfg.max_response};
    char ebuf[CURL_ERROR_SIZE] = "";

    rc = read_small_file(c->token_path, DAIS_K8S_MAX_TOKEN, &token, err);
    if (rc != 0) {
        if (reason != NULL) *reason = DAIS_K8S_R_CONFIG;
        return rc == DAIS_ETOOBIG ? DAIS_EINVAL : rc;
    }
    if (!valid_token(token)) {
        rc = FAILR(DAIS_K8S_R_CONFIG, DAIS_EINVAL,
                   "k8s: token file %s is empty or has characters a header cannot carry",
                   c->token_path);
        goto out;
    }
    auth_len = strlen(token) + 32;
    auth = malloc(auth_len);
    if (auth == NULL) goto nomem;
    snprintf(auth, auth_len, "Authorization: Bearer %s", token);
    if ((h = curl_slist_append(hdrs, auth)) == NULL) goto nomem;
    hdrs = h;
    if ((h = curl_slist_append(hdrs, "Accept: application/json")) == NULL) goto nomem;
    hdrs = h;

    e = curl_easy_init();
    if (e == NULL) goto nomem;
    long timeout_ms = (long)(c->cfg.timeout_ns / MS);
    long connect_ms = (long)(c->cfg.connect_timeout_ns / MS);
    CURLcode set = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (set == CURLE_OK) set = curl_easy_setopt(e, opt, val);                                  \
    } while (0)
    SET(CURLOPT_URL, c->list_url);
    SET(CURLOPT_PROTOCOLS_STR, "https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_CAINFO, c->ca_path);
    SET(CURLOPT_CAPATH, (char *)NULL);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SET(CURLOPT_TIMEOUT_MS, timeout_ms);
    SET(CURLOPT_HTTPHEADER, hdrs);
    SET(CURLOPT_USERAGENT, "dais/" DAIS_VERSION);
    SET(CURLOPT_ACCEPT_ENCODING, "");
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->cfg.max_response);
    SET(CURLOPT_WRITEFUNCTION, on_data);
    SET(CURLOPT_WRITEDATA, &b);
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, (void *)cancel);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_ERRORBUFFER, ebuf);
#undef SET
    if (set != CURLE_OK) {
        rc = FAILR(DAIS_K8S_R_CONFIG, DAIS_EINVAL, "k8s: libcurl option: %s",
                   curl_easy_strerror(set));
        goto out;
    }

    CURLcode cr = curl_easy_perform(e);
    const char *detail = ebuf[0] != '\0' ? ebuf : curl_easy_strerror(cr);
    if (b.nomem) goto nomem;
    switch (cr) {
    case CURLE_OK:
        break;
    case CURLE_ABORTED_BY_CALLBACK:
        rc = FAILR(DAIS_K8S_R_TRANSPORT, DAIS_ECANCELLED, "k8s: list cancelled");
        goto out;
    case CURLE_OPERATION_TIMEDOUT:
        rc = FAILR(DAIS_K8S_R_TIMEOUT, DAIS_ETIMEOUT, "k8s: %s: %s", c->list_url, detail);
        goto out;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        rc = FAILR(DAIS_K8S_R_CONNECT, DAIS_EIO, "k8s: %s: %s", c->list_url, detail);
        goto out;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
        rc = FAILR(DAIS_K8S_R_TLS, DAIS_EAUTH, "k8s: TLS with %s failed: %s", c->api_url, detail);
        goto out;
    case CURLE_FILESIZE_EXCEEDED:
        rc = FAILR(DAIS_K8S_R_TOOBIG, DAIS_ETOOBIG, "k8s: %s: response larger than the limit",
                   c->list_url);
        goto out;
    case CURLE_WRITE_ERROR:
        if (b.too_big) {
            rc = FAILR(DAIS_K8S_R_TOOBIG, DAIS_ETOOBIG, "k8s: %s: response larger than the limit",
                       c->list_url);
            goto out;
        }
        rc = FAILR(DAIS_K8S_R_TRANSPORT, DAIS_EIO, "k8s: %s: %s", c->list_url, detail);
        goto out;
    case CURLE_PARTIAL_FILE:
        rc = FAILR(DAIS_K8S_R_MALFORMED, DAIS_EFORMAT, "k8s: %s: truncated response: %s",
                   c->list_url, detail);
        goto out;
    default:
        rc = FAILR(DAIS_K8S_R_TRANSPORT, DAIS_EIO, "k8s: %s: %s", c->list_url, detail);
        goto out;
    }

    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        char sample[128], what[200];
        body_sample(&b, sample, sizeof(sample));
        snprintf(what, sizeof(what), "HTTP %ld%s%s", status, sample[0] != '\0' ? ": " : "", sample);
        enum dais_k8s_reason r = DAIS_K8S_R_HTTP;
        int code = DAIS_EPROTO;
        if (status == 401) {
            r = DAIS_K8S_R_UNAUTHORIZED;
            code = DAIS_EAUTH;
        } else if (status == 403) {
            r = DAIS_K8S_R_FORBIDDEN;
            code = DAIS_EAUTH;
        } else if (status == 429) {
            r = DAIS_K8S_R_THROTTLED;
            code = DAIS_EBUSY;
        } else if (status >= 500 && status <= 599) {
            r = DAIS_K8S_R_SERVER;
            code = DAIS_EAGAIN;
        }
        rc = FAILR(r, code, "k8s: %s: %s", c->list_url, what);
        goto out;
    }

    dais_k8s_parse_opts po = {.ns = c->ns, .selector = c->selector, .max_pods = c->cfg.max_pods};
    rc = dais_k8s_podlist_parse(b.data != NULL ? b.data : "", b.len, &po, out, err);
    if (rc != 0 && reason != NULL)
        *reason = rc == DAIS_ETOOBIG  ? DAIS_K8S_R_TOOBIG
                  : rc == DAIS_ENOMEM ? DAIS_K8S_R_TRANSPORT
                                      : DAIS_K8S_R_MALFORMED;
    goto out;
nomem:
    rc = FAILR(DAIS_K8S_R_TRANSPORT, DAIS_ENOMEM, "k8s: out of memory");
out:
    if (e != NULL) curl_easy_cleanup(e);
    for (h = hdrs; h != NULL; h = h->next)
        wipe(h->data, strlen(h->data));
    curl_slist_free_all(hdrs);
    wipe(auth, auth_len);
    free(auth);
    if (token != NULL) wipe(token, strlen(token));
    free(token);
    free(b.data);
    return rc;
}

/* ---- discovery thread ---------------------------------------------------------------------- */

typedef struct qnode {
    struct qnode *next;
    dais_k8s_result res;
} qnode;

struct dais_k8s_discovery {
    dais_k8s_client *client;
    dais_k8s_result_fn fn;
    void *arg;
    struct event_base *base;
    struct event *ev;
    int efd;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;     /* under mu */
    bool poll_now; /* under mu */
    atomic_int cancel;
    qnode *head, *tail; /* under mu */
    size_t queued;      /* under mu */

    _Atomic uint64_t polls, successes, failures[DAIS_K8S_R_COUNT], last_success_wall_s;
    _Atomic uint32_t last_pod_count;
    dais_counter *m_result[DAIS_K8S_R_COUNT];
};

static void free_queue(qnode *n)
{
    while (n != NULL) {
        qnode *next = n->next;
        dais_k8s_podlist_free(n->res.pods);
        free(n);
        n = next;
    }
}

/* Loop thread: the eventfd fired; deliver everything queued. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    dais_k8s_discovery *d = arg;
    uint64_t v;
    while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&d->mu);
    qnode *n = d->head;
    d->head = d->tail = NULL;
    d->queued = 0;
    pthread_mutex_unlock(&d->mu);
    while (n != NULL) {
        qnode *next = n->next;
        d->fn(d->arg, &n->res); /* takes n->res.pods */
        free(n);
        n = next;
    }
}

static void deliver(dais_k8s_discovery *d, dais_k8s_result *res)
{
    if (d->base == NULL) {
        d->fn(d->arg, res);
        return;
    }
    qnode *n = malloc(sizeof(*n));
    if (n == NULL) {
        DAIS_ERROR("k8s: out of memory queueing a discovery result; dropped");
        dais_k8s_podlist_free(res->pods);
        return;
    }
    n->next = NULL;
    n->res = *res;
    qnode *dropped = NULL;
    pthread_mutex_lock(&d->mu);
    if (d->tail != NULL)
        d->tail->next = n;
    else
        d->head = n;
    d->tail = n;
    if (++d->queued > MAX_QUEUED) {
        dropped = d->head;
        d->head = dropped->next;
        dropped->next = NULL;
        d->queued--;
    }
    pthread_mutex_unlock(&d->mu);
    free_queue(dropped);
    uint64_t one = 1;
    while (write(d->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

/* Waits until `deadline` (monotonic ns), a poll_now or stop. Returns true to stop. */
static bool wait_until(dais_k8s_discovery *d, uint64_t deadline)
{
    pthread_mutex_lock(&d->mu);
    while (!d->stop && !d->poll_now) {
        uint64_t now = dais_now_ns();
        if (now >= deadline) break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t wait = deadline - now;
        ts.tv_sec += (time_t)(wait / SEC);
        ts.tv_nsec += (long)(wait % SEC);
        if (ts.tv_nsec >= (long)SEC) {
            ts.tv_sec++;
            ts.tv_nsec -= (long)SEC;
        }
        pthread_cond_timedwait(&d->cv, &d->mu, &ts);
    }
    bool stop = d->stop;
    d->poll_now = false;
    pthread_mutex_unlock(&d->mu);
    return stop;
}

static void *discovery_main(void *arg)
{
    dais_k8s_discovery *d = arg;
    const dais_k8s_config *cfg = dais_k8s_client_config(d->client);
    dais_backoff bo;
    dais_backoff_init(&bo, &cfg->retry, dais_now_ns(), 0);
    uint32_t consecutive = 0;

    for (;;) {
        dais_k8s_result res;
        memset(&res, 0, sizeof(res));
        dais_err err;
        dais_err_clear(&err);
        enum dais_k8s_reason reason = DAIS_K8S_OK;
        int rc = dais_k8s_list(d->client, &d->cancel, &res.pods, &reason, &err);
        if (rc == DAIS_ECANCELLED) break;
        atomic_fetch_add_explicit(&d->polls, 1, memory_order_relaxed);
        uint64_t now = dais_now_ns();
        uint64_t wait;
        res.code = rc;
        res.reason = reason;
        if (rc == 0) {
            consecutive = 0;
            atomic_fetch_add_explicit(&d->successes, 1, memory_order_relaxed);
            atomic_store_explicit(&d->last_success_wall_s, (uint64_t)dais_wall_time(),
                                  memory_order_relaxed);
            atomic_store_explicit(&d->last_pod_count, (uint32_t)res.pods->n, memory_order_relaxed);
            dais_counter_inc(d->m_result[DAIS_K8S_OK]);
            dais_backoff_reset(&bo, now);
            wait = cfg->poll_interval_ns;
            DAIS_DEBUG("k8s: listed %zu pods (%zu filtered by labels)", res.pods->n,
                       res.pods->filtered);
        } else {
            if (consecutive < UINT32_MAX) consecutive++;
            unsigned r = (unsigned)reason < DAIS_K8S_R_COUNT ? (unsigned)reason
                                                             : (unsigned)DAIS_K8S_R_TRANSPORT;
            atomic_fetch_add_explicit(&d->failures[r], 1, memory_order_relaxed);
            dais_counter_inc(d->m_result[r]);
            if (dais_backoff_next(&bo, now, &wait) != 0) {
                /* A bounded retry policy ran out: fall back to the poll period, start over. */
                wait = cfg->poll_interval_ns;
                dais_backoff_reset(&bo, now);
            }
            snprintf(res.message, sizeof(res.message), "%s", err.msg);
            DAIS_WARN("k8s: pod list failed (%s, %u in a row; retry in %.1f s): %s",
                      dais_k8s_reason_name(reason), consecutive, (double)wait / 1e9, err.msg);
        }
        res.consecutive_failures = consecutive;
        res.retry_in_ns = wait;
        deliver(d, &res);
        if (wait_until(d, now + wait)) break;
    }
    return NULL;
}

static void register_metrics(dais_k8s_discovery *d, struct dais_metrics_registry *r)
{
    if (r == NULL) return;
    static const char *const labels[] = {"result"};
    dais_metric_family *f = dais_metrics_family_new(
        r, DAIS_METRIC_COUNTER, DAIS_M_K8S_DISCOVERY,
        "Kubernetes API pod list calls by result (ok or failure reason)", 1, labels, 0, NULL);
    if (f == NULL) {
        DAIS_WARN("k8s: cannot register %s; discovery runs without metrics", DAIS_M_K8S_DISCOVERY);
        return;
    }
    for (int i = 0; i < DAIS_K8S_R_COUNT; i++) {
        const char *v[] = {dais_k8s_reason_name((enum dais_k8s_reason)i)};
        d->m_result[i] = dais_counter_child(f, v);
    }
}

dais_k8s_discovery *dais_k8s_discovery_start(dais_k8s_client *client, struct event_base *base,
                                             dais_k8s_result_fn fn, void *arg, dais_err *err)
{
    if (client == NULL || fn == NULL) {
        dais_k8s_client_free(client);
        dais_err_set(err, DAIS_EINVAL, "k8s: discovery needs a client and a callback");
        return NULL;
    }
    dais_k8s_discovery *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        dais_k8s_client_free(client);
        dais_err_set(err, DAIS_ENOMEM, "k8s: out of memory");
        return NULL;
    }
    d->client = client;
    d->fn = fn;
    d->arg = arg;
    d->base = base;
    d->efd = -1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    register_metrics(d, dais_k8s_client_config(client)->metrics);

    if (base != NULL) {
        d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (d->efd < 0) {
            dais_err_set(err, DAIS_EIO, "k8s: eventfd: %s", strerror(errno));
            goto fail;
        }
        d->ev = event_new(base, d->efd, EV_READ | EV_PERSIST, on_wake, d);
        if (d->ev == NULL || event_add(d->ev, NULL) != 0) {
            dais_err_set(err, DAIS_ENOMEM, "k8s: cannot add the discovery event");
            goto fail;
        }
    }
    int e = pthread_create(&d->thread, NULL, discovery_main, d);
    if (e != 0) {
        dais_err_set(err, DAIS_ENOMEM, "k8s: cannot start the discovery thread: %s", strerror(e));
        goto fail;
    }
    d->thread_started = true;
    DAIS_INFO("k8s: discovering pods at %s every %.1f s", dais_k8s_client_url(client),
              (double)dais_k8s_client_config(client)->poll_interval_ns / 1e9);
    return d;
fail:
    dais_k8s_discovery_stop(d);
    return NULL;
}

void dais_k8s_discovery_poll_now(dais_k8s_discovery *d)
{
    if (d == NULL) return;
    pthread_mutex_lock(&d->mu);
    d->poll_now = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

void dais_k8s_discovery_stats(const dais_k8s_discovery *d, dais_k8s_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (d == NULL) return;
    out->polls = atomic_load_explicit(&d->polls, memory_order_relaxed);
    out->successes = atomic_load_explicit(&d->successes, memory_order_relaxed);
    for (int i = 0; i < DAIS_K8S_R_COUNT; i++)
        out->failures[i] = atomic_load_explicit(&d->failures[i], memory_order_relaxed);
    out->last_success_wall_s = atomic_load_explicit(&d->last_success_wall_s, memory_order_relaxed);
    out->last_pod_count = atomic_load_explicit(&d->last_pod_count, memory_order_relaxed);
}

void dais_k8s_discovery_stop(dais_k8s_discovery *d)
{
    if (d == NULL) return;
    if (d->thread_started) {
        pthread_mutex_lock(&d->mu);
        d->stop = true;
        atomic_store(&d->cancel, 1);
        pthread_cond_signal(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thread, NULL);
    }
    if (d->ev != NULL) event_free(d->ev);
    if (d->efd >= 0) close(d->efd);
    free_queue(d->head);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    dais_k8s_client_free(d->client);
    free(d);
}
