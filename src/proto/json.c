/*
 * The fast JSON reader and writer (see json.h).
 *
 * Reader. A lexer turns the bytes into the same tokens jansson's lexer does, over the same
 * byte ranges, so an error can be described exactly as jansson describes it: jansson reports
 * the token text read so far ("near '...'", when 1..20 bytes), and the line and column after
 * the last byte it consumed. Here a token is always input[tok, p), so the message is built
 * from that slice, and line and column are counted only when an error happens (jansson counts
 * code points; a UTF-8 sequence has exactly one byte that is not 10xxxxxx). The one place the
 * two lexers read differently is a string: jansson validates it in a first pass and decodes
 * \u escapes in a second, so a bad surrogate is reported only if nothing else is wrong with
 * the string, at its end; the single pass here keeps the first such problem pending until the
 * closing quote for the same result.
 *
 * The parser is a loop over an explicit stack of open containers. A value is linked into its
 * parent as soon as it exists (containers before their contents), which gives the same
 * insertion order as jansson's link-after-parse, and needs no pending key per level.
 *
 * Writer. Appends to a dais_json_buf; strings are copied in runs between characters that need
 * escaping; integers by a hand-written conversion; reals through the microsecond fast path or
 * "%.17g" (see write_real). The C library's number functions (strtod, snprintf) are used as in
 * the "C" locale, which is the only one dais runs in.
 */
#include "proto/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== reader ================================================================================ */

enum {
    TOK_EOF = 0,
    /* '{' '}' '[' ']' ':' ',' are their own characters */
    TOK_STRING = 256,
    TOK_INTEGER,
    TOK_REAL,
    TOK_TRUE,
    TOK_FALSE,
    TOK_NULL,
    TOK_INVALID, /* no token here; the parser says why (jansson: "invalid token" …) */
    TOK_ERROR,   /* the lexer failed and has set the error: stop */
};

#define SUPPORTED_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY)
#define CTX_MAX         20  /* jansson shows the token text only up to this many bytes */
#define INLINE_SCRATCH  256 /* decoded strings up to this size stay on the stack */
#define INLINE_STACK    32  /* open containers before the stack goes to the heap */

/* A decoding buffer for strings with escapes: an inline array, then the heap. */
typedef struct scratch {
    char *p;
    size_t cap;
    char inl[INLINE_SCRATCH];
} scratch;

typedef struct reader {
    const unsigned char *s, *p, *end;
    size_t flags;
    dais_json_error *err;
    /* the current token: input[tok, p) */
    int tok;
    const unsigned char *tok_start;
    const char *str; /* TOK_STRING: the value (into the input, or a scratch buffer) */
    size_t str_len;
    bool str_nul; /* the value holds a NUL (from \u0000) */
    bool str_dec; /* the value was decoded into sb[cur] */
    json_int_t ival;
    double rval;
    /* Two decoding buffers: a decoded key stays in one while the value's first token (maybe
     * an escaped string too) is decoded into the other. */
    scratch sb[2];
    int cur;
    const char *keyp; /* the pending object key */
    size_t key_len;
} reader;

/* ---- errors ----------------------------------------------------------------------------- */

static void set_error_at(reader *r, const unsigned char *at, const unsigned char *ctx,
                         size_t ctx_len, bool utf8, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Fills the error the way jansson's error_set does: the message, then " near '<ctx>'" for a
 * context of 1..20 bytes (printed as a C string: it ends at a NUL, and one that starts with a
 * NUL counts as none), nothing for a longer one, and " near end of file" for none, except
 * after a UTF-8 error. Line and column are those after the bytes up to `at`. */
static void set_error_at(reader *r, const unsigned char *at, const unsigned char *ctx,
                         size_t ctx_len, bool utf8, const char *fmt, ...)
{
    dais_json_error *e = r->err;
    if (e == NULL) return;
    char msg[96]; /* jansson's messages are short; with " near '<20 bytes>'" they fit text */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ctx_len > 0 && ctx[0] != '\0') {
        if (ctx_len <= CTX_MAX)
            snprintf(e->text, sizeof(e->text), "%s near '%.*s'", msg, (int)ctx_len,
                     (const char *)ctx);
        else
            snprintf(e->text, sizeof(e->text), "%s", msg);
    } else if (utf8) {
        snprintf(e->text, sizeof(e->text), "%s", msg);
    } else {
        snprintf(e->text, sizeof(e->text), "%s near end of file", msg);
    }
    int line = 1;
    const unsigned char *ls = r->s;
    for (const unsigned char *q = r->s; q < at; q++) {
        q = memchr(q, '\n', (size_t)(at - q));
        if (q == NULL) break;
        line++;
        ls = q + 1;
    }
    int col = 0;
    for (const unsigned char *q = ls; q < at; q++)
        col += (*q & 0xC0) != 0x80;
    e->line = line;
    e->column = col;
    e->position = (size_t)(at - r->s);
}

/* An error about the current token (jansson's error_set after a lex_scan). */
#define TOKEN_ERROR(r, ...)                                                                        \
    set_error_at((r), (r)->p, (r)->tok_start, (size_t)((r)->p - (r)->tok_start), false, __VA_ARGS__)

static int lex_fail(reader *r)
{
    return r->tok = TOK_ERROR;
}

/* jansson validates each byte >= 0x80 it reads as the start of a whole UTF-8 sequence. */
static int utf8_fail(reader *r, const unsigned char *at, const unsigned char *tok)
{
    set_error_at(r, at, tok, (size_t)(at - tok), true, "unable to decode byte 0x%x", *at);
    return lex_fail(r);
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence starting at p (p < end, *p >= 0x80), 0 when invalid:
 * overlong forms, surrogates (U+D800..DFFF) and code points above U+10FFFF are invalid, as is
 * a sequence cut by the end of the input. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    if (c < 0xC2) return 0;
    if (c < 0xE0) return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0;  /* overlong */
        if (c == 0xED && p[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0;  /* overlong */
        if (c == 0xF4 && p[1] >= 0x90) return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

static size_t utf8_put(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- lexer ------------------------------------------------------------------------------ */

/* Bytes a string copies without a second look: printable ASCII but '"' and '\\'. */
/* clang-format off */
static const unsigned char str_plain[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0),
    /* 0x20 */ 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    R16(1), R16(1),
    /* 0x50 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    R16(1), R16(1),
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0),
#undef R16
};
/* clang-format on */

/* The first byte at or after q that is not str_plain (or end). Eight bytes at a time: in
 * (x - 0x0101..01 * n) & ~x & 0x8080..80 the lowest set bit marks the first byte below n
 * exactly (a borrow only runs upwards from a byte that is itself below n), so one mask
 * finds the first control character, '"', '\\' or byte >= 0x80. */
static const unsigned char *skip_plain(const unsigned char *q, const unsigned char *end)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - q >= 8) {
        uint64_t x;
        memcpy(&x, q, 8);
        uint64_t qt = x ^ (ones * '"'), bs = x ^ (ones * '\\');
        uint64_t m = ((x - ones * 0x20) & ~x) | ((qt - ones) & ~qt) | ((bs - ones) & ~bs) | x;
        m &= highs;
        if (m != 0) return q + (__builtin_ctzll(m) >> 3);
        q += 8;
    }
#endif
    while (q < end && str_plain[*q])
        q++;
    return q;
}

static bool is_digit(unsigned c)
{
    return c - '0' < 10;
}

static bool is_alpha(unsigned c)
{
    return (c | 0x20) - 'a' < 26;
}

static int hex_val(unsigned c)
{
    if (c - '0' < 10) return (int)(c - '0');
    if ((c | 0x20) - 'a' < 6) return (int)((c | 0x20) - 'a' + 10);
    return -1;
}

static bool scratch_reserve(scratch *b, size_t used, size_t more)
{
    if (more <= b->cap - used) return true;
    size_t cap = b->cap * 2;
    while (cap - used < more)
        cap *= 2;
    char *n = b->p == b->inl ? malloc(cap) : realloc(b->p, cap);
    if (n == NULL) return false;
    if (b->p == b->inl) memcpy(n, b->inl, used);
    b->p = n;
    b->cap = cap;
    return true;
}

static void scratch_init(scratch *b)
{
    b->p = b->inl;
    b->cap = sizeof(b->inl);
}

static void scratch_close(scratch *b)
{
    if (b->p != b->inl) free(b->p);
}

/* A string token: p is at its opening quote. Without escapes the value is the input slice;
 * with escapes it is decoded into r->sb[r->cur]. The checks run in the order of jansson's first
 * pass (control characters, escape syntax, UTF-8, end of input); the surrogate checks of its
 * second pass only report once the string has ended without any other error. */
static int lex_string(reader *r, const unsigned char *p)
{
    const unsigned char *q = p + 1, *end = r->end, *seg = q;
    scratch *b = &r->sb[r->cur];
    size_t olen = 0;
    bool decoding = false, nul = false;
    uint32_t hi = 0;    /* a high surrogate waiting for its pair (the next escape) */
    char pend[64] = ""; /* the first surrogate error, reported at the closing quote */
    for (;;) {
        q = skip_plain(q, end);
        if (q == end) {
            set_error_at(r, q, p, (size_t)(q - p), false, "premature end of input");
            return lex_fail(r);
        }
        unsigned c = *q;
        if (c >= 0x80) {
            size_t n = utf8_len(q, end);
            if (n == 0) return utf8_fail(r, q, p);
            q += n;
            continue;
        }
        if (c == '"') break;
        if (c < 0x20) {
            if (c == '\n')
                set_error_at(r, q, p, (size_t)(q - p), false, "unexpected newline");
            else
                set_error_at(r, q, p, (size_t)(q - p), false, "control character 0x%x", c);
            return lex_fail(r);
        }
        /* A backslash: flush the plain run before it, then decode the escape. */
        size_t run = (size_t)(q - seg);
        if (!scratch_reserve(b, olen, run + 4)) goto nomem;
        memcpy(b->p + olen, seg, run);
        olen += run;
        decoding = true;
        q++;
        if (q == end) {
            set_error_at(r, q, p, (size_t)(q - p), false, "invalid escape");
            return lex_fail(r);
        }
        unsigned e = *q;
        if (e >= 0x80 && utf8_len(q, end) == 0) return utf8_fail(r, q, p);
        q++;
        char simple = 0;
        switch (e) {
        case '"':
            simple = '"';
            break;
        case '\\':
            simple = '\\';
            break;
        case '/':
            simple = '/';
            break;
        case 'b':
            simple = '\b';
            break;
        case 'f':
            simple = '\f';
            break;
        case 'n':
            simple = '\n';
            break;
        case 'r':
            simple = '\r';
            break;
        case 't':
            simple = '\t';
            break;
        case 'u':
            break;
        default:
            set_error_at(r, q, p, (size_t)(q - p), false, "invalid escape");
            return lex_fail(r);
        }
        if (e != 'u') {
            if (hi != 0 && pend[0] == '\0')
                snprintf(pend, sizeof(pend), "invalid Unicode '\\u%04X'", (unsigned)hi);
            hi = 0;
            b->p[olen++] = simple;
            seg = q;
            continue;
        }
        uint32_t v = 0;
        for (int i = 0; i < 4; i++) {
            if (q == end) {
                set_error_at(r, q, p, (size_t)(q - p), false, "invalid escape");
                return lex_fail(r);
            }
            if (*q >= 0x80 && utf8_len(q, end) == 0) return utf8_fail(r, q, p);
            int h = hex_val(*q);
            q++;
            if (h < 0) {
                set_error_at(r, q, p, (size_t)(q - p), false, "invalid escape");
                return lex_fail(r);
            }
            v = (v << 4) | (uint32_t)h;
        }
        seg = q;
        if (hi != 0) {
            /* The escape right after a high surrogate: it must be the low half. */
            if (v >= 0xDC00 && v <= 0xDFFF) {
                olen += utf8_put(b->p + olen, 0x10000 + ((hi - 0xD800) << 10) + (v - 0xDC00));
            } else if (pend[0] == '\0') {
                snprintf(pend, sizeof(pend), "invalid Unicode '\\u%04X\\u%04X'", (unsigned)hi,
                         (unsigned)v);
            }
            hi = 0;
        } else if (v >= 0xD800 && v <= 0xDBFF) {
            if (end - q >= 2 && q[0] == '\\' && q[1] == 'u')
                hi = v;
            else if (pend[0] == '\0')
                snprintf(pend, sizeof(pend), "invalid Unicode '\\u%04X'", (unsigned)v);
        } else if (v >= 0xDC00 && v <= 0xDFFF) {
            if (pend[0] == '\0')
                snprintf(pend, sizeof(pend), "invalid Unicode '\\u%04X'", (unsigned)v);
        } else {
            olen += utf8_put(b->p + olen, v);
            nul |= v == 0;
        }
    }
    /* q is at the closing quote. */
    const unsigned char *cq = q;
    r->p = q + 1;
    if (pend[0] != '\0') {
        TOKEN_ERROR(r, "%s", pend);
        return lex_fail(r);
    }
    if (decoding) {
        size_t run = (size_t)(cq - seg);
        if (!scratch_reserve(b, olen, run + 1)) goto nomem;
        memcpy(b->p + olen, seg, run);
        olen += run;
        r->str = b->p;
        r->str_len = olen;
    } else {
        r->str = (const char *)p + 1;
        r->str_len = (size_t)(cq - p - 1);
    }
    r->str_nul = nul;
    r->str_dec = decoding;
    return r->tok = TOK_STRING;
nomem:
    set_error_at(r, q, NULL, 0, true, "out of memory");
    return lex_fail(r);
}

/* The byte after a number or a word: jansson reads it (then puts it back), so a byte that does
 * not start valid UTF-8 is reported there, with the token so far as context. */
static bool lookahead_ok(reader *r, const unsigned char *tok, const unsigned char *q)
{
    if (q < r->end && *q >= 0x80 && utf8_len(q, r->end) == 0) {
        utf8_fail(r, q, tok);
        return false;
    }
    return true;
}

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The double nearest to the decimal p[0..n) (a valid JSON number with '.', 'e' or 'E').
 * Exact and quick when the significant digits fit 2^53 and the power of ten is at most 22
 * (both operands are then exact doubles and one IEEE operation rounds correctly, Clinger's
 * observation); strtod otherwise. Returns false on overflow to infinity. */
static bool to_real(const unsigned char *p, size_t n, double *out)
{
    const unsigned char *q = p, *end = p + n;
    bool neg = *q == '-';
    q += neg;
    uint64_t m = 0;
    int digits = 0, frac = 0;
    bool many = false;
    for (; q < end && is_digit(*q); q++) {
        if (m == 0 && *q == '0') continue;
        if (digits < 19) {
            m = m * 10 + (*q - '0');
            digits++;
        } else {
            many = true;
        }
    }
    if (q < end && *q == '.') {
        for (q++; q < end && is_digit(*q); q++) {
            frac++;
            if (m == 0 && *q == '0') continue;
            if (digits < 19) {
                m = m * 10 + (*q - '0');
                digits++;
            } else {
                many = true;
            }
        }
    }
    long exp = 0;
    if (q < end) { /* 'e' or 'E' */
        q++;
        bool eneg = *q == '-';
        q += *q == '-' || *q == '+';
        for (; q < end; q++) {
            if (exp < 100000) exp = exp * 10 + (*q - '0');
        }
        if (eneg) exp = -exp;
    }
    if (m == 0 && !many) {
        *out = neg ? -0.0 : 0.0;
        return true;
    }
    long e10 = exp - frac;
    if (!many && m <= (UINT64_C(1) << 53) && e10 >= -22 && e10 <= 22) {
        double v = (double)m;
        v = e10 < 0 ? v / pow10_exact[-e10] : v * pow10_exact[e10];
        *out = neg ? -v : v;
        return true;
    }
    char small[64];
    char *t = n < sizeof(small) ? small : malloc(n + 1);
    if (t == NULL) return false;
    memcpy(t, p, n);
    t[n] = '\0';
    errno = 0;
    double v = strtod(t, NULL);
    bool over = (v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE;
    if (t != small) free(t);
    *out = v;
    return !over;
}

/* A number token, as jansson scans it: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? with
 * everything else an invalid token ending where jansson stops reading. */
static int lex_number(reader *r, const unsigned char *p)
{
    const unsigned char *q = p, *end = r->end;
    bool neg = *q == '-';
    q += neg;
    const unsigned char *ds = q;
    if (q < end && *q == '0') {
        q++;
        if (q < end && is_digit(*q)) {
            r->p = q;
            return r->tok = TOK_INVALID;
        }
    } else if (q < end && is_digit(*q)) {
        while (q < end && is_digit(*q))
            q++;
    } else {
        if (!lookahead_ok(r, p, q)) return TOK_ERROR;
        r->p = q;
        return r->tok = TOK_INVALID;
    }
    if (q == end || (*q != '.' && *q != 'e' && *q != 'E')) {
        if (!lookahead_ok(r, p, q)) return TOK_ERROR;
        r->p = q;
        size_t nd = (size_t)(q - ds);
        uint64_t u = 0;
        bool over = nd > 19;
        for (const unsigned char *d = ds; d < q && !over; d++)
            u = u * 10 + (*d - '0');
        if (!over) over = neg ? u > (UINT64_C(1) << 63) : u > (uint64_t)INT64_MAX;
        if (over) {
            TOKEN_ERROR(r, neg ? "too big negative integer" : "too big integer");
            return lex_fail(r);
        }
        r->ival = neg ? (json_int_t)(0 - u) : (json_int_t)u;
        return r->tok = TOK_INTEGER;
    }
    if (*q == '.') {
        q++;
        if (q == end || !is_digit(*q)) {
            if (!lookahead_ok(r, p, q)) return TOK_ERROR;
            r->p = q;
            return r->tok = TOK_INVALID;
        }
        while (q < end && is_digit(*q))
            q++;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < end && (*q == '+' || *q == '-')) q++;
        if (q == end || !is_digit(*q)) {
            if (!lookahead_ok(r, p, q)) return TOK_ERROR;
            r->p = q;
            return r->tok = TOK_INVALID;
        }
        while (q < end && is_digit(*q))
            q++;
    }
    if (!lookahead_ok(r, p, q)) return TOK_ERROR;
    r->p = q;
    if (!to_real(p, (size_t)(q - p), &r->rval)) {
        TOKEN_ERROR(r, "real number overflow");
        return lex_fail(r);
    }
    return r->tok = TOK_REAL;
}

static int lex(reader *r)
{
    const unsigned char *p = r->p, *end = r->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    r->tok_start = p;
    r->p = p;
    if (p == end) return r->tok = TOK_EOF;
    unsigned c = *p;
    switch (c) {
    case '{':
    case '}':
    case '[':
    case ']':
    case ':':
    case ',':
        r->p = p + 1;
        return r->tok = (int)c;
    case '"':
        return lex_string(r, p);
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return lex_number(r, p);
    default:
        break;
    }
    if (is_alpha(c)) {
        /* jansson reads the whole word for a clearer message */
        const unsigned char *q = p + 1;
        while (q < end && is_alpha(*q))
            q++;
        if (!lookahead_ok(r, p, q)) return TOK_ERROR;
        r->p = q;
        size_t n = (size_t)(q - p);
        if (n == 4 && memcmp(p, "true", 4) == 0) return r->tok = TOK_TRUE;
        if (n == 5 && memcmp(p, "false", 5) == 0) return r->tok = TOK_FALSE;
        if (n == 4 && memcmp(p, "null", 4) == 0) return r->tok = TOK_NULL;
        return r->tok = TOK_INVALID;
    }
    if (c < 0x80) {
        r->p = p + 1;
        return r->tok = TOK_INVALID;
    }
    size_t n = utf8_len(p, end);
    if (n == 0) return utf8_fail(r, p, p);
    r->p = p + n; /* a whole character, so the message shows valid UTF-8 */
    return r->tok = TOK_INVALID;
}

/* lex() with the tokens that follow most others tried first, without the whitespace loop
 * and the dispatch: compact JSON has a ':' after every key, a ',' or a closing bracket after
 * every value, and mostly strings after those. */
static inline int lex_next(reader *r)
{
    const unsigned char *p = r->p;
    if (p < r->end) {
        unsigned c = *p;
        if (c == '"') {
            r->tok_start = p;
            return lex_string(r, p);
        }
        if (c == ':' || c == ',' || c == '}' || c == ']') {
            r->tok_start = p;
            r->p = p + 1;
            return r->tok = (int)c;
        }
    }
    return lex(r);
}

/* ---- parser ----------------------------------------------------------------------------- */

static void oom(reader *r)
{
    set_error_at(r, r->p, NULL, 0, true, "out of memory");
}

/* Links v into parent (NULL: v is the root) under the pending key; takes v (jansson frees it
 * when linking fails). */
static int link_value(reader *r, json_t *parent, json_t **root, json_t *v)
{
    if (v == NULL) return -1;
    if (parent == NULL) {
        *root = v;
        return 0;
    }
    if (json_is_array(parent)) return json_array_append_new(parent, v);
    return json_object_setn_new_nocheck(parent, r->keyp, r->key_len, v);
}

json_t *dais_json_parse(const char *s, size_t len, size_t flags, dais_json_error *err)
{
    reader r;
    memset(&r, 0, sizeof(r));
    r.err = err;
    if (err != NULL) {
        err->line = err->column = -1;
        err->position = 0;
        err->text[0] = '\0';
    }
    if (s == NULL || (flags & ~(size_t)SUPPORTED_FLAGS) != 0) {
        if (err != NULL)
            snprintf(err->text, sizeof(err->text), "%s",
                     s == NULL ? "wrong arguments" : "unsupported flags");
        return NULL;
    }
    r.s = r.p = (const unsigned char *)s;
    r.end = r.s + len;
    r.flags = flags;
    scratch_init(&r.sb[0]);
    scratch_init(&r.sb[1]);

    json_t *root = NULL;
    json_t *inline_stack[INLINE_STACK];
    json_t **stack = inline_stack;
    size_t depth = 0, cap = INLINE_STACK; /* open containers */

    lex(&r);
    if (r.tok == TOK_ERROR) goto fail;
    if (!(flags & JSON_DECODE_ANY) && r.tok != '[' && r.tok != '{') {
        TOKEN_ERROR(&r, "'[' or '{' expected");
        goto fail;
    }

    /* The current token starts a value at nesting depth + 1. */
value:
    if (r.tok == TOK_ERROR) goto fail;
    if (depth + 1 > DAIS_JSON_MAX_DEPTH) {
        TOKEN_ERROR(&r, "maximum parsing depth reached");
        goto fail;
    }
    {
        json_t *parent = depth > 0 ? stack[depth - 1] : NULL;
        json_t *v;
        switch (r.tok) {
        case TOK_STRING:
            if (r.str_nul && !(flags & JSON_ALLOW_NUL)) {
                TOKEN_ERROR(&r, "\\u0000 is not allowed without JSON_ALLOW_NUL");
                goto fail;
            }
            v = json_stringn_nocheck(r.str, r.str_len);
            break;
        case TOK_INTEGER:
            v = json_integer(r.ival);
            break;
        case TOK_REAL:
            v = json_real(r.rval);
            break;
        case TOK_TRUE:
            v = json_true();
            break;
        case TOK_FALSE:
            v = json_false();
            break;
        case TOK_NULL:
            v = json_null();
            break;
        case '{':
        case '[':
            v = r.tok == '{' ? json_object() : json_array();
            if (link_value(&r, parent, &root, v) != 0) {
                oom(&r);
                goto fail;
            }
            if (depth == cap) {
                size_t ncap = cap * 2;
                json_t **ns = stack == inline_stack ? malloc(ncap * sizeof(json_t *))
                                                    : realloc(stack, ncap * sizeof(json_t *));
                if (ns == NULL) {
                    oom(&r);
                    goto fail;
                }
                if (stack == inline_stack) memcpy(ns, inline_stack, sizeof(inline_stack));
                stack = ns;
                cap = ncap;
            }
            stack[depth++] = v;
            if (lex_next(&r) == TOK_ERROR) goto fail;
            if (json_is_object(v)) {
                if (r.tok == '}') {
                    depth--;
                    goto after_value;
                }
                goto key;
            }
            if (r.tok == ']') {
                depth--;
                goto after_value;
            }
            if (r.tok == TOK_EOF) {
                TOKEN_ERROR(&r, "']' expected");
                goto fail;
            }
            goto value;
        case TOK_INVALID:
            TOKEN_ERROR(&r, "invalid token");
            goto fail;
        default:
            TOKEN_ERROR(&r, "unexpected token");
            goto fail;
        }
        if (link_value(&r, parent, &root, v) != 0) {
            oom(&r);
            goto fail;
        }
    }

    /* A value is complete; what may follow depends on the innermost open container. */
after_value:
    if (depth == 0) {
        if (lex_next(&r) == TOK_ERROR) goto fail;
        if (r.tok != TOK_EOF) {
            TOKEN_ERROR(&r, "end of file expected");
            goto fail;
        }
        goto done;
    }
    if (lex_next(&r) == TOK_ERROR) goto fail;
    if (json_is_array(stack[depth - 1])) {
        if (r.tok == ',') {
            if (lex_next(&r) == TOK_ERROR) goto fail;
            if (r.tok == TOK_EOF) {
                TOKEN_ERROR(&r, "']' expected");
                goto fail;
            }
            goto value;
        }
        if (r.tok != ']') {
            TOKEN_ERROR(&r, "']' expected");
            goto fail;
        }
        depth--;
        goto after_value;
    }
    if (r.tok == ',') {
        if (lex_next(&r) == TOK_ERROR) goto fail;
        goto key;
    }
    if (r.tok != '}') {
        TOKEN_ERROR(&r, "'}' expected");
        goto fail;
    }
    depth--;
    goto after_value;

    /* The current token should be a key of the innermost (object) container. */
key:
    if (r.tok != TOK_STRING) {
        TOKEN_ERROR(&r, "string or '}' expected");
        goto fail;
    }
    if (r.str_nul) {
        TOKEN_ERROR(&r, "NUL byte in object key not supported");
        goto fail;
    }
    if ((flags & JSON_REJECT_DUPLICATES) &&
        json_object_getn(stack[depth - 1], r.str, r.str_len) != NULL) {
        TOKEN_ERROR(&r, "duplicate object key");
        goto fail;
    }
    /* Keep the key while the value's first token is read: a decoded key lives in its own
     * buffer, since the value may be an escaped string too. */
    r.keyp = r.str;
    r.key_len = r.str_len;
    if (r.str_dec) r.cur ^= 1;
    if (lex_next(&r) == TOK_ERROR) goto fail;
    if (r.tok != ':') {
        TOKEN_ERROR(&r, "':' expected");
        goto fail;
    }
    lex_next(&r);
    goto value;

done:
    if (stack != inline_stack) free(stack);
    scratch_close(&r.sb[0]);
    scratch_close(&r.sb[1]);
    return root;
fail:
    if (stack != inline_stack) free(stack);
    scratch_close(&r.sb[0]);
    scratch_close(&r.sb[1]);
    json_decref(root);
    return NULL;
}

/* ==== writer ================================================================================ */

#define BUF_NO_LIMIT ((size_t)-1 / 2)

void dais_json_buf_init(dais_json_buf *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max != 0 && max < BUF_NO_LIMIT ? max : BUF_NO_LIMIT;
    b->err = 0;
}

void dais_json_buf_close(dais_json_buf *b)
{
    if (b == NULL) return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *dais_json_buf_take(dais_json_buf *b, size_t *len)
{
    if (b->err == 0 && b->data == NULL) {
        b->data = malloc(1);
        if (b->data == NULL)
            b->err = DAIS_ENOMEM;
        else
            b->data[0] = '\0';
    }
    if (b->err != 0) {
        dais_json_buf_close(b);
        if (len != NULL) *len = 0;
        return NULL;
    }
    char *s = b->data;
    if (len != NULL) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

/* Makes room for `more` bytes plus the NUL; false (err set) when it cannot. */
static bool buf_room(dais_json_buf *b, size_t more)
{
    if (b->err != 0) return false;
    if (more > b->max - b->len) {
        b->err = DAIS_ETOOBIG;
        return false;
    }
    if (more < b->cap - b->len) return true; /* cap == len == 0 at first: grows */
    size_t need = b->len + more + 1;
    /* One allocation holds a typical envelope. 992 and not 1024: glibc serves a request of
     * a 1 KiB chunk or more from its large bins, and consolidates all its fast bins first. */
    size_t cap = b->cap != 0 ? b->cap : 992;
    while (cap < need)
        cap = cap > BUF_NO_LIMIT / 2 ? need : cap * 2;
    if (cap > b->max + 1) cap = b->max + 1; /* still >= need */
    char *n = realloc(b->data, cap);
    if (n == NULL) {
        b->err = DAIS_ENOMEM;
        return false;
    }
    b->data = n;
    b->cap = cap;
    return true;
}

void dais_json_buf_raw(dais_json_buf *b, const char *s, size_t n)
{
    if (!buf_room(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* 0: copied as it is; else the character after the backslash ('u': \u00XX). */
/* clang-format off */
static const char esc_class[256] = {
    ['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f', ['\r'] = 'r',
    [0x00] = 'u', [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u', [0x05] = 'u',
    [0x06] = 'u', [0x07] = 'u', [0x0b] = 'u', [0x0e] = 'u', [0x0f] = 'u', [0x10] = 'u',
    [0x11] = 'u', [0x12] = 'u', [0x13] = 'u', [0x14] = 'u', [0x15] = 'u', [0x16] = 'u',
    [0x17] = 'u', [0x18] = 'u', [0x19] = 'u', [0x1a] = 'u', [0x1b] = 'u', [0x1c] = 'u',
    [0x1d] = 'u', [0x1e] = 'u', [0x1f] = 'u', ['"'] = '"',  ['\\'] = '\\',
};
/* clang-format on */

void dais_json_buf_str(dais_json_buf *b, const char *s, size_t n)
{
    /* Room for the common case (nothing to escape) at once; escapes grow it as they come. */
    if (!buf_room(b, n + 2)) return;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    b->data[b->len++] = '"';
    for (;;) {
        const unsigned char *q = p;
        while (q < end && esc_class[*q] == 0)
            q++;
        size_t run = (size_t)(q - p);
        if (!buf_room(b, run + 1)) return;
        memcpy(b->data + b->len, p, run);
        b->len += run;
        if (q == end) break;
        char e = esc_class[*q];
        if (e == 'u') {
            static const char hx[] = "0123456789ABCDEF";
            char u[6] = {'\\', 'u', '0', '0', hx[*q >> 4], hx[*q & 15]};
            if (!buf_room(b, 6 + 1)) return;
            memcpy(b->data + b->len, u, 6);
            b->len += 6;
        } else {
            if (!buf_room(b, 2 + 1)) return;
            b->data[b->len++] = '\\';
            b->data[b->len++] = e;
        }
        p = q + 1;
    }
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
}

/* Decimal digits of u, written backwards ending at `end`; returns the first. */
static char *utoa_rev(uint64_t u, char *end)
{
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    return end;
}

void dais_json_buf_int(dais_json_buf *b, int64_t v)
{
    char t[24];
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char *s = utoa_rev(u, t + sizeof(t));
    if (v < 0) *--s = '-';
    dais_json_buf_raw(b, s, (size_t)(t + sizeof(t) - s));
}

/* v written as a decimal with at most six fraction digits when that is exact: the r with
 * r / 1e6 == v (r within 2^53, so the division is of exact operands and rounds once, as
 * strtod of the printed decimal does) printed with trailing zeros cut, one kept. Other values
 * go through "%.17g", which always reads back exactly, plus ".0" when it has no '.' or 'e'. */
void dais_json_buf_real(dais_json_buf *b, double v)
{
    if (b->err != 0) return;
    if (!isfinite(v)) {
        b->err = DAIS_EINVAL;
        return;
    }
    char t[40];
    double x = v * 1e6;
    if (fabs(x) <= 9007199254740992.0) {
        double rr = nearbyint(x);
        for (int k = 0; k < 3; k++) {
            double c = rr + (k == 0 ? 0 : k == 1 ? -1 : 1);
            if (c / 1e6 != v || fabs(c) > 9007199254740992.0) continue;
            uint64_t r = (uint64_t)fabs(c);
            char *end = t + sizeof(t);
            uint64_t ip = r / 1000000, fp = r % 1000000;
            char fr[6];
            for (int i = 5; i >= 0; i--) {
                fr[i] = (char)('0' + fp % 10);
                fp /= 10;
            }
            int nf = 6;
            while (nf > 1 && fr[nf - 1] == '0')
                nf--;
            end -= nf;
            memcpy(end, fr, (size_t)nf);
            *--end = '.';
            char *s = utoa_rev(ip, end);
            if (signbit(v)) *--s = '-';
            dais_json_buf_raw(b, s, (size_t)(t + sizeof(t) - s));
            return;
        }
    }
    int n = snprintf(t, sizeof(t), "%.17g", v);
    if (n <= 0 || (size_t)n >= sizeof(t) - 3) {
        b->err = DAIS_EINVAL;
        return;
    }
    if (strpbrk(t, ".e") == NULL) {
        memcpy(t + n, ".0", 3);
        n += 2;
    }
    dais_json_buf_raw(b, t, (size_t)n);
}

static void write_value(dais_json_buf *b, const json_t *v, int depth)
{
    if (b->err != 0) return;
    if (depth > DAIS_JSON_MAX_DEPTH) {
        b->err = DAIS_ETOOBIG;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        dais_json_buf_raw(b, "{", 1);
        bool first = true;
        for (void *it = json_object_iter((json_t *)v); it != NULL && b->err == 0;
             it = json_object_iter_next((json_t *)v, it)) {
            if (!first) dais_json_buf_raw(b, ",", 1);
            first = false;
            dais_json_buf_str(b, json_object_iter_key(it), json_object_iter_key_len(it));
            dais_json_buf_raw(b, ":", 1);
            write_value(b, json_object_iter_value(it), depth + 1);
        }
        dais_json_buf_raw(b, "}", 1);
        return;
    }
    case JSON_ARRAY: {
        dais_json_buf_raw(b, "[", 1);
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n && b->err == 0; i++) {
            if (i > 0) dais_json_buf_raw(b, ",", 1);
            write_value(b, json_array_get(v, i), depth + 1);
        }
        dais_json_buf_raw(b, "]", 1);
        return;
    }
    case JSON_STRING:
        dais_json_buf_str(b, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        dais_json_buf_int(b, (int64_t)json_integer_value(v));
        return;
    case JSON_REAL:
        dais_json_buf_real(b, json_real_value(v));
        return;
    case JSON_TRUE:
        dais_json_buf_raw(b, "true", 4);
        return;
    case JSON_FALSE:
        dais_json_buf_raw(b, "false", 5);
        return;
    case JSON_NULL:
        dais_json_buf_raw(b, "null", 4);
        return;
    }
    b->err = DAIS_EINVAL;
}

void dais_json_buf_value(dais_json_buf *b, const json_t *v)
{
    if (v == NULL) {
        if (b->err == 0) b->err = DAIS_EINVAL;
        return;
    }
    write_value(b, v, 1);
}

char *dais_json_dumps(const json_t *v, size_t *len)
{
    dais_json_buf b;
    dais_json_buf_init(&b, 0);
    dais_json_buf_value(&b, v);
    return dais_json_buf_take(&b, len);
}
