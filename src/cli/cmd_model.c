/*
 * `dais model`: inspect and make model files.
 *   dais model info FILE     GGUF header, metadata and tensor table, then whether (and as what)
 *                            the engine can run it
 *   dais model synth … -o F  write a synthetic Llama GGUF with random weights (engine/synth.h)
 *   dais model shard IN --layers A:B -o OUT
 *                            write the shard file of one pipeline stage (engine/shard.h)
 */
#include "common/clock.h"
#include "common/error.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/shard.h"
#include "engine/synth.h"
#include "worker/config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int dais_cmd_model(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: dais model info FILE [--arrays N] [--hash]\n"
        "       dais model synth [shape options] --type TYPE -o FILE\n"
        "       dais model shard FILE --layers A:B -o OUT\n"
        "\n"
        "info: prints the GGUF header, every metadata key (the first N elements of arrays,\n"
        "  default 16, -1 for all), the tensor table, then whether the engine can run the file\n"
        "  (hyper-parameters, weight bytes per token); --hash adds the file's SHA-256.\n"
        "\n"
        "synth: writes a Llama GGUF with random weights and a real llama-kind vocabulary.\n"
        "  --preset NAME     start from a shape: tiny (the default: dim 64, 2 layers, 4 heads,\n"
        "                    2 kv heads, ffn 160, vocab 320, ctx 256) or tinyllama "
        "(TinyLlama-1.1B:\n"
        "                    dim 2048, 22 layers, 32 heads, 4 kv heads, ffn 5632, vocab 32000,\n"
        "                    ctx 2048)\n"
        "  --dim D  --layers L  --heads H  --kv-heads K  --ffn F  --vocab V  --ctx C\n"
        "  --type T          f32 | f16 | bf16 | q8_0 | q4_0 | q4_k | q6_k (default f32)\n"
        "  --seed S          weights seed (default 1)\n"
        "  --rope-base B     RoPE frequency base (default 10000)\n"
        "  --tied            no output.weight (the embedding is reused)\n"
        "  -t, --threads N   threads for generating/quantizing (default: online CPUs)\n"
        "  -o, --output FILE the file to write (required)\n"
        "\n"
        "shard: writes the shard file of pipeline stage [A, B): FILE's metadata, the dais.shard.*\n"
        "  keys (range, FILE's SHA-256) and only the tensors layers A..B-1 need (the embedding\n"
        "  when A = 0, the output norm and matrix when B = the layer count). A worker serves it\n"
        "  with --model OUT (its --layers default to A:B) and chains with stages of FILE.\n");
}

static int parse_i(const char *s, long lo, long hi, const char *what, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "dais model: %s must be an integer in [%ld, %ld], got '%s'\n", what, lo, hi,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

static int cmd_info(int argc, char **argv)
{
    static const struct option opts[] = {
        {"arrays", required_argument, NULL, 'a'},
        {"hash", no_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long arrays = 16;
    bool hash = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            if (parse_i(optarg, -1, 1 << 30, "--arrays", &arrays)) return 1;
            break;
        case 'H':
            hash = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "dais model info: give exactly one FILE\n");
        return 1;
    }
    const char *path = argv[optind];
    dais_err err;
    dais_gguf *g = dais_gguf_open(path, &err);
    if (g == NULL) {
        if (strncmp(err.msg, path, strlen(path)) == 0)
            fprintf(stderr, "dais model info: %s\n", err.msg);
        else
            fprintf(stderr, "dais model info: %s: %s\n", path, err.msg);
        return 1;
    }
    int rc = dais_gguf_dump(g, stdout, (int)arrays);
    dais_gguf_free(g);
    if (rc != 0) {
        fprintf(stderr, "dais model info: writing the description failed\n");
        return 1;
    }
    dais_model *m = dais_model_load_any(path, &err);
    if (m == NULL) {
        printf("\nengine: cannot run this file: %s\n", err.msg);
        return 0;
    }
    const dais_hparams *hp = dais_model_hparams(m);
    int32_t lf, ll;
    if (dais_model_layer_range(m, &lf, &ll))
        printf("\nengine: shard file: layers [%d, %d) of %d (%s stage), source sha256 %s\n"
               "engine: serves only that range: dais worker --model %s --layers %d:%d",
               lf, ll, hp->n_layers,
               lf == 0              ? "first"
               : ll == hp->n_layers ? "last"
                                    : "middle",
               dais_model_source_hash(m), path, lf, ll);
    printf("\nengine: runnable %s model%s%s%s: vocab %d, dim %d, layers %d, heads %d (kv %d, "
           "head dim %d), ffn %d, context %d, rope base %g%s, output %s\n"
           "engine: %.1f MB of weights read per token\n",
           hp->arch, hp->name[0] ? " '" : "", hp->name, hp->name[0] ? "'" : "", hp->n_vocab,
           hp->dim, hp->n_layers, hp->n_heads, hp->n_kv_heads, hp->head_dim, hp->ffn_dim,
           hp->n_ctx_train, (double)hp->rope_base,
           hp->rope_freqs_tensor                          ? " (rope_freqs factors)"
           : hp->rope_scaling == DAIS_ROPE_SCALING_LLAMA3 ? " (llama3 scaling)"
           : hp->rope_scaling == DAIS_ROPE_SCALING_LINEAR ? " (linear scaling)"
                                                          : "",
           hp->tied_output ? "tied to the embedding" : "separate",
           (double)dais_model_weight_bytes(m) / 1e6);
    if (hash) {
        uint64_t t0 = dais_now_ns();
        const char *h = dais_model_hash(m);
        printf("engine: sha256 %s (%.2f s)\n", h ? h : "(failed)",
               (double)(dais_now_ns() - t0) * 1e-9);
    }
    dais_model_free(m);
    return 0;
}

enum {
    O_PRESET = 256,
    O_DIM,
    O_LAYERS,
    O_HEADS,
    O_KV,
    O_FFN,
    O_VOCAB,
    O_CTX,
    O_TYPE,
    O_SEED,
    O_ROPE,
    O_TIED
};

static int cmd_synth(int argc, char **argv)
{
    static const struct option opts[] = {
        {"preset", required_argument, NULL, O_PRESET},
        {"dim", required_argument, NULL, O_DIM},
        {"layers", required_argument, NULL, O_LAYERS},
        {"heads", required_argument, NULL, O_HEADS},
        {"kv-heads", required_argument, NULL, O_KV},
        {"ffn", required_argument, NULL, O_FFN},
        {"vocab", required_argument, NULL, O_VOCAB},
        {"ctx", required_argument, NULL, O_CTX},
        {"type", required_argument, NULL, O_TYPE},
        {"seed", required_argument, NULL, O_SEED},
        {"rope-base", required_argument, NULL, O_ROPE},
        {"tied", no_argument, NULL, O_TIED},
        {"threads", required_argument, NULL, 't'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    dais_synth_params p;
    dais_synth_params_default(&p);
    long nt = sysconf(_SC_NPROCESSORS_ONLN);
    p.n_threads = nt > 0 ? (int)nt : 1;
    const char *out = NULL;
    long v;
    int c;
    /* --preset first, so explicit shape options override it wherever they appear. */
    for (int i = 1; i < argc; i++) {
        const char *name;
        if (strncmp(argv[i], "--preset=", 9) == 0)
            name = argv[i] + 9;
        else if (strcmp(argv[i], "--preset") == 0 && i + 1 < argc)
            name = argv[i + 1];
        else
            continue;
        if (strcmp(name, "tinyllama") == 0) {
            p.dim = 2048, p.n_layers = 22, p.n_heads = 32, p.n_kv_heads = 4;
            p.ffn_dim = 5632, p.n_vocab = 32000, p.n_ctx = 2048;
        } else if (strcmp(name, "tiny") != 0) {
            fprintf(stderr, "dais model synth: unknown preset '%s' (tiny, tinyllama)\n", name);
            return 1;
        }
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:o:h", opts, NULL)) != -1) {
        int32_t *field = NULL;
        long lo = 1, hi = 1 << 20;
        switch (c) {
        case O_PRESET:
            break;
        case O_DIM:
            field = &p.dim;
            hi = DAIS_MODEL_MAX_DIM;
            break;
        case O_LAYERS:
            field = &p.n_layers;
            hi = DAIS_MODEL_MAX_LAYERS;
            break;
        case O_HEADS:
            field = &p.n_heads;
            hi = DAIS_MODEL_MAX_HEADS;
            break;
        case O_KV:
            field = &p.n_kv_heads;
            hi = DAIS_MODEL_MAX_HEADS;
            break;
        case O_FFN:
            field = &p.ffn_dim;
            hi = DAIS_MODEL_MAX_FFN;
            break;
        case O_VOCAB:
            field = &p.n_vocab;
            hi = 1000000;
            break;
        case O_CTX:
            field = &p.n_ctx;
            hi = DAIS_MODEL_MAX_CTX;
            break;
        case O_TYPE: {
            int t = dais_dtype_from_name(optarg);
            if (t < 0) {
                fprintf(stderr, "dais model synth: unknown type '%s'\n", optarg);
                return 1;
            }
            p.type = (uint32_t)t;
            break;
        }
        case O_SEED: {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || optarg[0] == '-') {
                fprintf(stderr, "dais model synth: --seed must be a non-negative integer\n");
                return 1;
            }
            p.seed = s;
            break;
        }
        case O_ROPE: {
            char *end;
            double d = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(d >= 1.0 && d <= 1e12)) {
                fprintf(stderr, "dais model synth: --rope-base must be a number >= 1\n");
                return 1;
            }
            p.rope_base = (float)d;
            break;
        }
        case O_TIED:
            p.tied_output = true;
            break;
        case 't':
            if (parse_i(optarg, 1, 256, "--threads", &v)) return 1;
            p.n_threads = (int)v;
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
        if (field != NULL) {
            if (parse_i(optarg, lo, hi, opts[c - O_PRESET].name, &v)) return 1;
            *field = (int32_t)v;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dais model synth: unexpected argument '%s'\n", argv[optind]);
        return 1;
    }
    if (out == NULL) {
        fprintf(stderr, "dais model synth: an output file is required (-o FILE)\n");
        return 1;
    }
    uint64_t t0 = dais_now_ns();
    dais_err err;
    if (dais_synth_write(&p, out, &err) != 0) {
        fprintf(stderr, "dais model synth: %s\n", err.msg);
        return 1;
    }
    FILE *f = fopen(out, "rb");
    long size = -1;
    if (f != NULL && fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (f != NULL) fclose(f);
    fprintf(stderr,
            "dais model synth: wrote %s (%s, dim %d, %d layers, %d/%d heads, ffn %d, "
            "vocab %d, ctx %d; %.1f MB) in %.1f s\n",
            out, dais_dtype_name(p.type), p.dim, p.n_layers, p.n_heads, p.n_kv_heads, p.ffn_dim,
            p.n_vocab, p.n_ctx, (double)size / 1e6, (double)(dais_now_ns() - t0) * 1e-9);
    return 0;
}

static int cmd_shard(int argc, char **argv)
{
    static const struct option opts[] = {
        {"layers", required_argument, NULL, 'l'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL;
    int32_t first = -1, last = -1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            if (dais_worker_parse_layers(optarg, &first, &last) != 0) {
                fprintf(stderr,
                        "dais model shard: --layers '%s' is not A:B with 0 <= A < B <= 1024\n",
                        optarg);
                return 1;
            }
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "dais model shard: give exactly one source FILE\n");
        return 1;
    }
    if (first < 0) {
        fprintf(stderr, "dais model shard: --layers A:B is required\n");
        return 1;
    }
    if (out == NULL) {
        fprintf(stderr, "dais model shard: an output file is required (-o OUT)\n");
        return 1;
    }
    const char *in = argv[optind];
    uint64_t t0 = dais_now_ns();
    dais_err err;
    dais_shard_info si;
    if (dais_shard_write(in, first, last, out, &si, &err) != 0) {
        fprintf(stderr, "dais model shard: %s\n", err.msg);
        return 1;
    }
    long size = -1;
    FILE *f = fopen(out, "rb");
    if (f != NULL && fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (f != NULL) fclose(f);
    fprintf(stderr,
            "dais model shard: wrote %s (layers [%d, %d) of %s, source sha256 %.12s…; %.1f MB) "
            "in %.1f s\n",
            out, si.layer_first, si.layer_last, in, si.source_sha256, (double)size / 1e6,
            (double)(dais_now_ns() - t0) * 1e-9);
    return 0;
}

int dais_cmd_model(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(argv[1], "synth") == 0) return cmd_synth(argc - 1, argv + 1);
    if (strcmp(argv[1], "shard") == 0) return cmd_shard(argc - 1, argv + 1);
    fprintf(stderr, "dais model: unknown subcommand '%s' (info, synth, shard)\n", argv[1]);
    usage(stderr);
    return 1;
}
