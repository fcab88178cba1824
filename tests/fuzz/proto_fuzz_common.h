/*
 * Shared by the protocol fuzz targets: runs every typed-payload decoder of src/proto on a
 * decoded message (forcing each message type in turn), and re-encodes what decoded, so that
 * anything a decoder accepted is proven safe to use and to send back.
 */
#ifndef DAIS_TESTS_FUZZ_PROTO_FUZZ_COMMON_H
#define DAIS_TESTS_FUZZ_PROTO_FUZZ_COMMON_H

#include "proto/frame.h"
#include "proto/messages.h"

#include <stdlib.h>
#include <string.h>

static void fuzz_use_text(const char *s, size_t n, volatile size_t *sink)
{
    for (size_t i = 0; i < n; i++)
        *sink += (unsigned char)s[i];
}

/* Decodes m as every type; each accepted payload is encoded again into a fresh message. */
static inline void fuzz_all_decoders(dais_msg *m)
{
    volatile size_t sink = 0;
    enum dais_msg_type orig = m->type;
    dais_err err;
    for (int t = 1; t < DAIS_MSG__COUNT; t++) {
        m->type = (enum dais_msg_type)t;
        dais_msg *out = dais_msg_new(m->type, "fuzz", "fuzz");
        if (out == NULL) abort();
        switch (m->type) {
        case DAIS_MSG_NODE_DISCOVERY: {
            dais_msg_discovery d;
            if (dais_discovery_decode(m, &d, &err) == 0) {
                if (strlen(d.node_id) == 0 || d.model.layer_first >= d.model.layer_last) abort();
                dais_auth_verify_discovery("t", 1, d.node_id, &d.auth, 0, 1000, NULL);
                dais_discovery_encode(&d, out);
            }
            break;
        }
        case DAIS_MSG_NODE_ACCEPT: {
            dais_msg_accept a;
            if (dais_accept_decode(m, &a, &err) == 0 && dais_accept_encode(&a, out) != 0) abort();
            break;
        }
        case DAIS_MSG_NODE_REJECT: {
            dais_msg_reject r;
            if (dais_reject_decode(m, &r, &err) == 0) dais_reject_encode(&r, out);
            break;
        }
        case DAIS_MSG_HEARTBEAT: {
            dais_msg_heartbeat h;
            if (dais_heartbeat_decode(m, &h, &err) == 0) dais_heartbeat_encode(&h, out);
            break;
        }
        case DAIS_MSG_HEARTBEAT_ACK: {
            dais_msg_heartbeat_ack a;
            if (dais_heartbeat_ack_decode(m, &a, &err) == 0) dais_heartbeat_ack_encode(&a, out);
            break;
        }
        case DAIS_MSG_INFERENCE_REQUEST: {
            dais_msg_infer_req q;
            if (dais_infer_req_decode(m, &q, &err) == 0) {
                if (q.prompt != NULL) fuzz_use_text(q.prompt, q.prompt_len, &sink);
                for (int32_t i = 0; i < q.n_tokens; i++)
                    sink += (size_t)q.tokens[i];
                if (q.n_generated > q.n_tokens || q.params.n_stop > DAIS_STOP_MAX) abort();
                dais_infer_req_encode(&q, out);
                dais_infer_req_clear(&q);
            }
            break;
        }
        case DAIS_MSG_INFERENCE_RESPONSE: {
            dais_msg_infer_resp r;
            if (dais_infer_resp_decode(m, &r, &err) == 0) {
                fuzz_use_text(r.text, r.text_len, &sink);
                for (int32_t i = 0; i < r.n_tokens; i++)
                    sink += (size_t)r.tokens[i];
                dais_infer_resp_encode(&r, out);
                dais_infer_resp_clear(&r);
            }
            break;
        }
        case DAIS_MSG_SHARD_ACTIVATION: {
            dais_msg_shard a;
            if (dais_shard_decode(m, &a, &err) == 0) {
                if (a.n_tokens < 1 || (a.kind == DAIS_SHARD_TOKENS) == (a.tokens == NULL)) abort();
                for (int32_t i = 0; a.tokens != NULL && i < a.n_tokens; i++)
                    sink += (size_t)a.tokens[i];
                for (int64_t i = 0; a.hidden != NULL && i < (int64_t)a.n_tokens * a.dim; i++)
                    if (!(a.hidden[i] == a.hidden[i])) abort(); /* no NaN gets through */
                if (dais_shard_encode(&a, out) != 0) abort();
                dais_shard_clear(&a);
            }
            break;
        }
        case DAIS_MSG_CANCEL: {
            dais_msg_cancel c;
            if (dais_cancel_decode(m, &c, &err) == 0) dais_cancel_encode(&c, out);
            break;
        }
        case DAIS_MSG_DRAIN: {
            dais_msg_drain d;
            if (dais_drain_decode(m, &d, &err) == 0) dais_drain_encode(&d, out);
            break;
        }
        case DAIS_MSG_ERROR: {
            dais_msg_error e;
            if (dais_error_decode(m, &e, &err) == 0) dais_error_encode(&e, out);
            break;
        }
        case DAIS_MSG_MODEL_SYNC_REQUEST: {
            dais_msg_sync_req q;
            if (dais_sync_req_decode(m, &q, &err) == 0) {
                char subject[512];
                if (q.model[0] == '\0' || q.offset > DAIS_SYNC_SIZE_MAX ||
                    dais_sync_auth_subject_layers(q.node_id, q.model, q.offset, q.layer_first,
                                                  q.layer_last, subject, sizeof(subject)) != 0)
                    abort(); /* a decoded request always yields its auth subject */
                dais_auth_verify_discovery("t", 1, subject, &q.auth, 0, 1000, NULL);
                if (dais_sync_req_encode(&q, out) != 0) abort();
            }
            break;
        }
        case DAIS_MSG_MODEL_SYNC_CHUNK: {
            dais_msg_sync_chunk c;
            if (dais_sync_chunk_decode(m, &c, &err) == 0) {
                if (c.offset > c.size || c.len > c.size - c.offset ||
                    c.final != (c.offset + c.len == c.size) || c.len != m->bin_len)
                    abort();
                for (uint32_t i = 0; i < c.len; i++)
                    sink += c.data[i];
                if (dais_sync_chunk_encode(&c, out) != 0) abort();
            }
            break;
        }
        default:
            break;
        }
        dais_msg_free(out);
    }
    m->type = orig;
    (void)sink;
}

#endif
