/*
 * `dais generate`: load a GGUF model and generate text from a prompt on this machine, printing
 * the text as it is produced and one speed summary line on stderr. No cluster involved.
 */
#include "common/error.h"
#include "engine/generate.h"
#include "engine/model.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int dais_cmd_generate(int argc, char **argv);

#define MAX_PROMPT_FILE (64u << 20)
#define DEFAULT_CTX_CAP 4096

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: dais generate -m MODEL.gguf [-p PROMPT | -f FILE] [options]\n"
        "\n"
        "Generates text from a prompt with a GGUF Llama model on this machine. The text is\n"
        "printed as it is produced (the prompt first); a summary line goes to stderr.\n"
        "\n"
        "  -m, --model FILE        GGUF model (required)\n"
        "  -p, --prompt TEXT       prompt (default: empty, generation starts from BOS)\n"
        "  -f, --file FILE         read the prompt from FILE\n"
        "  -n, --n-predict N       new tokens to generate (default 128; 0 = until EOS/context)\n"
        "  -t, --threads N         compute threads (default: online CPUs, fewer for models under\n"
        "                          4 MB per thread, where synchronisation costs more than it "
        "saves)\n"
        "  -c, --ctx N             context length in tokens (default: the model's, at most %d)\n"
        "  -b, --batch N           most prompt tokens per forward pass (default 512)\n"
        "      --temp F            temperature; 0 = greedy (default 0.8)\n"
        "      --top-k N           keep the N most likely tokens; 0 = off (default 40)\n"
        "      --top-p F           nucleus sampling; 1 = off (default 0.95)\n"
        "      --min-p F           drop tokens below F x the top probability; 0 = off (default "
        "0.05)\n"
        "      --repeat-penalty F  penalise the last --repeat-last-n tokens; 1 = off (default 1)\n"
        "      --repeat-last-n N   window of the penalty (default 64)\n"
        "  -s, --seed N            RNG seed (default: from the clock; printed in the summary)\n"
        "      --stop STR          stop before STR (repeatable, up to %d)\n"
        "      --ignore-eos        keep generating past end-of-sequence tokens\n"
        "      --special           spellings of control tokens in the prompt become tokens\n"
        "      --no-echo           do not print the prompt\n"
        "  -h, --help              this text\n"
        "\n"
        "With --temp 1 --top-p P --top-k 0 --min-p 0 and a seed, sampling matches llama2.c's "
        "run.c.\n",
        DEFAULT_CTX_CAP, DAIS_STOP_MAX);
}

static int parse_long(const char *s, long lo, long hi, const char *what, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "dais generate: %s must be an integer in [%ld, %ld], got '%s'\n", what, lo,
                hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_float(const char *s, double lo, double hi, const char *what, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) {
        fprintf(stderr, "dais generate: %s must be a number in [%g, %g], got '%s'\n", what, lo, hi,
                s);
        return -1;
    }
    *out = (float)v;
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "dais generate: cannot open prompt file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (n == cap) {
            if (cap >= MAX_PROMPT_FILE) {
                fprintf(stderr, "dais generate: prompt file %s is larger than %u bytes\n", path,
                        MAX_PROMPT_FILE);
                free(buf);
                buf = NULL;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                fprintf(stderr, "dais generate: reading %s failed\n", path);
                free(buf);
                buf = NULL;
            }
            break;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

typedef struct out_state {
    bool printed;
    bool last_newline;
} out_state;

static int on_text(void *user, const char *text, size_t len)
{
    out_state *o = user;
    if (len == 0) return 0;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    o->printed = true;
    o->last_newline = text[len - 1] == '\n';
    return 0;
}

enum {
    OPT_TEMP = 256,
    OPT_TOPK,
    OPT_TOPP,
    OPT_MINP,
    OPT_REPPEN,
    OPT_REPN,
    OPT_STOP,
    OPT_IGNORE_EOS,
    OPT_SPECIAL,
    OPT_NO_ECHO,
};

int dais_cmd_generate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"prompt", required_argument, NULL, 'p'},
        {"file", required_argument, NULL, 'f'},
        {"n-predict", required_argument, NULL, 'n'},
        {"threads", required_argument, NULL, 't'},
        {"ctx", required_argument, NULL, 'c'},
        {"batch", required_argument, NULL, 'b'},
        {"seed", required_argument, NULL, 's'},
        {"temp", required_argument, NULL, OPT_TEMP},
        {"top-k", required_argument, NULL, OPT_TOPK},
        {"top-p", required_argument, NULL, OPT_TOPP},
        {"min-p", required_argument, NULL, OPT_MINP},
        {"repeat-penalty", required_argument, NULL, OPT_REPPEN},
        {"repeat-last-n", required_argument, NULL, OPT_REPN},
        {"stop", required_argument, NULL, OPT_STOP},
        {"ignore-eos", no_argument, NULL, OPT_IGNORE_EOS},
        {"special", no_argument, NULL, OPT_SPECIAL},
        {"no-echo", no_argument, NULL, OPT_NO_ECHO},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *model_path = NULL, *prompt = NULL, *prompt_file = NULL;
    const char *stops[DAIS_STOP_MAX];
    int n_stop = 0;
    long threads = 0, ctx = 0, batch = 512, v;
    bool seeded = false;
    dais_gen_params gp;
    dais_gen_params_default(&gp);
    gp.echo_prompt = true;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:f:n:t:c:b:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model_path = optarg;
            break;
        case 'p':
            prompt = optarg;
            break;
        case 'f':
            prompt_file = optarg;
            break;
        case 'n':
            if (parse_long(optarg, 0, INT32_MAX, "-n", &v)) return 1;
            gp.n_predict = (int32_t)v;
            break;
        case 't':
            if (parse_long(optarg, 1, 256, "--threads", &threads)) return 1;
            break;
        case 'c':
            if (parse_long(optarg, 1, DAIS_MODEL_MAX_CTX, "--ctx", &ctx)) return 1;
            break;
        case 'b':
            if (parse_long(optarg, 1, 65536, "--batch", &batch)) return 1;
            break;
        case 's': {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || optarg[0] == '-') {
                fprintf(stderr, "dais generate: --seed must be a non-negative integer, got '%s'\n",
                        optarg);
                return 1;
            }
            gp.sampling.seed = s;
            seeded = true;
            break;
        }
        case OPT_TEMP:
            if (parse_float(optarg, 0, 1e6, "--temp", &gp.sampling.temperature)) return 1;
            break;
        case OPT_TOPK:
            if (parse_long(optarg, 0, INT32_MAX, "--top-k", &v)) return 1;
            gp.sampling.top_k = (int32_t)v;
            break;
        case OPT_TOPP:
            if (parse_float(optarg, 0, 1, "--top-p", &gp.sampling.top_p)) return 1;
            break;
        case OPT_MINP:
            if (parse_float(optarg, 0, 1, "--min-p", &gp.sampling.min_p)) return 1;
            break;
        case OPT_REPPEN:
            if (parse_float(optarg, 1e-3, 1e3, "--repeat-penalty", &gp.sampling.repeat_penalty))
                return 1;
            break;
        case OPT_REPN:
            if (parse_long(optarg, 0, 1 << 20, "--repeat-last-n", &v)) return 1;
            gp.sampling.repeat_last_n = (int32_t)v;
            break;
        case OPT_STOP:
            if (n_stop == DAIS_STOP_MAX || strlen(optarg) > DAIS_STOP_MAX_LEN) {
                fprintf(stderr, "dais generate: at most %d --stop strings of at most %d bytes\n",
                        DAIS_STOP_MAX, DAIS_STOP_MAX_LEN);
                return 1;
            }
            stops[n_stop++] = optarg;
            break;
        case OPT_IGNORE_EOS:
            gp.ignore_eos = true;
            break;
        case OPT_SPECIAL:
            gp.parse_special = true;
            break;
        case OPT_NO_ECHO:
            gp.echo_prompt = false;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dais generate: unexpected argument '%s'\n", argv[optind]);
        return 1;
    }
    if (model_path == NULL) {
        fprintf(stderr, "dais generate: a model is required (-m MODEL.gguf)\n");
        usage(stderr);
        return 1;
    }
    if (prompt != NULL && prompt_file != NULL) {
        fprintf(stderr, "dais generate: give -p or -f, not both\n");
        return 1;
    }
    if (!seeded) gp.sampling.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    gp.stop = stops;
    gp.n_stop = n_stop;

    int status = 1;
    char *file_text = NULL;
    size_t plen = 0;
    if (prompt_file != NULL) {
        if ((file_text = read_file(prompt_file, &plen)) == NULL) return 1;
        prompt = file_text;
    } else if (prompt != NULL) {
        plen = strlen(prompt);
    } else {
        prompt = "";
    }

    dais_err err;
    dais_model *m = NULL;
    dais_ctx *cx = NULL;
    dais_kv *kv = NULL;
    m = dais_model_load(model_path, &err);
    if (m == NULL) {
        /* GGUF reader messages already start with the path; the model's own do not. */
        if (strncmp(err.msg, model_path, strlen(model_path)) == 0)
            fprintf(stderr, "dais generate: %s\n", err.msg);
        else
            fprintf(stderr, "dais generate: %s: %s\n", model_path, err.msg);
        goto out;
    }
    const dais_hparams *hp = dais_model_hparams(m);
    if (threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        long by_size = (long)(dais_model_weight_bytes(m) / (4u << 20));
        threads = by_size < cpus ? by_size : cpus;
        if (threads < 1) threads = 1;
    }
    int32_t n_ctx = (int32_t)(ctx > 0 ? ctx
                                      : (hp->n_ctx_train < DEFAULT_CTX_CAP ? hp->n_ctx_train
                                                                           : DEFAULT_CTX_CAP));
    cx = dais_ctx_new(m, (int)threads, (int32_t)batch, &err);
    if (cx == NULL) {
        fprintf(stderr, "dais generate: %s\n", err.msg);
        goto out;
    }
    kv = dais_kv_new(m, n_ctx, 0, hp->n_layers);
    if (kv == NULL) {
        fprintf(stderr, "dais generate: cannot allocate a KV cache of %d positions\n", n_ctx);
        goto out;
    }
    out_state os = {0};
    dais_gen_callbacks cb = {.on_text = on_text, .user = &os};
    dais_gen_stats st;
    if (dais_generate(cx, kv, prompt, plen, &gp, &cb, &st, &err) != 0) {
        if (os.printed) fputc('\n', stdout);
        fprintf(stderr, "dais generate: %s\n", err.msg);
        goto out;
    }
    if (os.printed && !os.last_newline) fputc('\n', stdout);
    fflush(stdout);
    double pf = st.prefill_s > 0 ? st.n_prompt / st.prefill_s : 0;
    double dc = st.decode_s > 0 ? st.n_decode / st.decode_s : 0;
    fprintf(stderr,
            "dais generate: prompt %d tokens, prefill %.1f tok/s | generated %d tokens, decode "
            "%.1f tok/s | total %.3f s | stop: %s | threads %ld, seed %llu\n",
            st.n_prompt, pf, st.n_gen, dc, st.total_s, dais_gen_stop_name(st.stop), threads,
            (unsigned long long)gp.sampling.seed);
    status = 0;
out:
    dais_kv_free(kv);
    dais_ctx_free(cx);
    dais_model_free(m);
    free(file_text);
    return status;
}
