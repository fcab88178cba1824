/*
 * Shard files (see shard.h): reading and validating the dais.shard.* keys, deciding which
 * tensors a layer range needs, and writing a shard file from a whole model file.
 */
#include "engine/shard.h"

#include "engine/model.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_layer(const dais_gguf *g, const char *key, int32_t lo, int32_t hi, int32_t *out,
                      dais_err *err)
{
    uint32_t v;
    int rc = dais_gguf_get_u32(g, key, &v, err);
    if (rc == DAIS_ENOTFOUND)
        return dais_err_set(err, DAIS_EFORMAT, "shard file: missing metadata key %s", key);
    if (rc < 0) {
        char why[sizeof(err->msg)];
        snprintf(why, sizeof(why), "%s", err != NULL ? err->msg : key);
        return dais_err_set(err, DAIS_EFORMAT, "shard file: %s", why);
    }
    if (v < (uint32_t)lo || v > (uint32_t)hi)
        return dais_err_set(err, DAIS_EFORMAT,
                            "shard file: %s = %" PRIu32 " is out of range [%d, %d] "
                            "(llama.block_count is %d)",
                            key, v, lo, hi, hi);
    *out = (int32_t)v;
    return 0;
}

int dais_shard_read(const dais_gguf *g, int32_t n_layers, dais_shard_info *out, dais_err *err)
{
    if (dais_gguf_find(g, DAIS_SHARD_KEY_FIRST) == NULL &&
        dais_gguf_find(g, DAIS_SHARD_KEY_LAST) == NULL &&
        dais_gguf_find(g, DAIS_SHARD_KEY_SOURCE) == NULL)
        return DAIS_ENOTFOUND;
    dais_shard_info si;
    memset(&si, 0, sizeof(si));
    int rc;
    if ((rc = read_layer(g, DAIS_SHARD_KEY_FIRST, 0, n_layers - 1, &si.layer_first, err)) ||
        (rc = read_layer(g, DAIS_SHARD_KEY_LAST, 1, n_layers, &si.layer_last, err)))
        return rc;
    if (si.layer_first >= si.layer_last)
        return dais_err_set(
            err, DAIS_EFORMAT, "shard file: empty layer range [%d, %d) (%s must be below %s)",
            si.layer_first, si.layer_last, DAIS_SHARD_KEY_FIRST, DAIS_SHARD_KEY_LAST);
    dais_gguf_str s;
    rc = dais_gguf_get_str(g, DAIS_SHARD_KEY_SOURCE, &s, err);
    if (rc == DAIS_ENOTFOUND)
        return dais_err_set(err, DAIS_EFORMAT, "shard file: missing metadata key %s",
                            DAIS_SHARD_KEY_SOURCE);
    if (rc < 0)
        return dais_err_set(err, DAIS_EFORMAT, "shard file: %s is not a string",
                            DAIS_SHARD_KEY_SOURCE);
    bool hex = s.len == 64;
    for (uint64_t i = 0; hex && i < s.len; i++)
        hex = (s.ptr[i] >= '0' && s.ptr[i] <= '9') || (s.ptr[i] >= 'a' && s.ptr[i] <= 'f');
    if (!hex)
        return dais_err_set(err, DAIS_EFORMAT,
                            "shard file: %s is not a SHA-256 (64 lowercase hex digits; "
                            "%" PRIu64 " bytes found)",
                            DAIS_SHARD_KEY_SOURCE, s.len);
    memcpy(si.source_sha256, s.ptr, 64);
    si.source_sha256[64] = '\0';
    *out = si;
    return 0;
}

bool dais_shard_needs_tensor(const char *name, int32_t first, int32_t last, int32_t n_layers,
                             bool tied)
{
    if (strncmp(name, "blk.", 4) == 0) {
        char *end;
        long n = strtol(name + 4, &end, 10);
        return end != name + 4 && *end == '.' && n >= first && n < last;
    }
    bool top = last == n_layers;
    if (strcmp(name, "token_embd.weight") == 0) return first == 0 || (top && tied);
    if (strcmp(name, "output_norm.weight") == 0 || strcmp(name, "output.weight") == 0) return top;
    return strcmp(name, "rope_freqs.weight") == 0;
}

int dais_shard_write(const char *in, int32_t first, int32_t last, const char *out,
                     dais_shard_info *info, dais_err *err)
{
    dais_err_clear(err);
    int rc = 0;
    dais_gguf_writer *w = NULL;
    dais_model *m = dais_model_load(in, err);
    if (m == NULL) return err && err->code ? err->code : DAIS_EFORMAT;
    const dais_hparams *hp = dais_model_hparams(m);
    if (first < 0 || first >= last || last > hp->n_layers) {
        rc = dais_err_set(err, DAIS_EINVAL,
                          "layers %d:%d: the model has %d layers (0 <= A < B <= %d)", first, last,
                          hp->n_layers, hp->n_layers);
        goto done;
    }
    if (first == 0 && last == hp->n_layers) {
        rc = dais_err_set(err, DAIS_EINVAL,
                          "layers %d:%d are the whole model: serve the file itself", first, last);
        goto done;
    }
    const char *hash = dais_model_hash(m);
    if (hash == NULL) {
        rc = dais_err_set(err, DAIS_EINTERNAL, "%s: cannot compute the SHA-256", in);
        goto done;
    }
    w = dais_gguf_writer_new();
    if (w == NULL) {
        rc = dais_err_set(err, DAIS_ENOMEM, "out of memory");
        goto done;
    }
    const dais_gguf *g = dais_model_gguf(m);
    for (uint64_t i = 0; i < dais_gguf_n_kv(g); i++)
        dais_gguf_writer_copy_kv(w, g, dais_gguf_kv_at(g, i));
    dais_gguf_writer_set_u32(w, DAIS_SHARD_KEY_FIRST, (uint32_t)first);
    dais_gguf_writer_set_u32(w, DAIS_SHARD_KEY_LAST, (uint32_t)last);
    dais_gguf_writer_set_str(w, DAIS_SHARD_KEY_SOURCE, hash);
    /* Borrowed from the mapping: the writer streams each tensor straight from the source. */
    for (uint64_t i = 0; i < dais_gguf_n_tensors(g); i++) {
        const dais_gguf_tensor *t = dais_gguf_tensor_at(g, i);
        if (dais_shard_needs_tensor(t->name, first, last, hp->n_layers, hp->tied_output))
            dais_gguf_writer_add_tensor_nocopy(w, t->name, t->type, t->n_dims, t->ne, t->data);
    }
    rc = dais_gguf_writer_write(w, out, err);
    if (rc == 0 && info != NULL) {
        info->layer_first = first;
        info->layer_last = last;
        memcpy(info->source_sha256, hash, 65);
    }
done:
    dais_gguf_writer_free(w);
    dais_model_free(m);
    return rc;
}
