/* The GGML type table (see dtype.h). Sizes follow the GGML block layouts. */
#include "engine/dtype.h"

#include <strings.h>

static const dais_dtype_info table[DAIS_DTYPE_MAX] = {
    [DAIS_F32] = {"f32", 1, 4, true},
    [DAIS_F16] = {"f16", 1, 2, true},
    [DAIS_Q4_0] = {"q4_0", 32, 18, true},
    [DAIS_Q4_1] = {"q4_1", 32, 20, false},
    [DAIS_Q5_0] = {"q5_0", 32, 22, false},
    [DAIS_Q5_1] = {"q5_1", 32, 24, false},
    [DAIS_Q8_0] = {"q8_0", 32, 34, true},
    [DAIS_Q8_1] = {"q8_1", 32, 36, false},
    [DAIS_Q2_K] = {"q2_K", 256, 84, false},
    [DAIS_Q3_K] = {"q3_K", 256, 110, false},
    [DAIS_Q4_K] = {"q4_K", 256, 144, true},
    [DAIS_Q5_K] = {"q5_K", 256, 176, false},
    [DAIS_Q6_K] = {"q6_K", 256, 210, true},
    [DAIS_Q8_K] = {"q8_K", 256, 292, false},
    [DAIS_IQ2_XXS] = {"iq2_xxs", 256, 66, false},
    [DAIS_IQ2_XS] = {"iq2_xs", 256, 74, false},
    [DAIS_IQ3_XXS] = {"iq3_xxs", 256, 98, false},
    [DAIS_IQ1_S] = {"iq1_s", 256, 50, false},
    [DAIS_IQ4_NL] = {"iq4_nl", 32, 18, false},
    [DAIS_IQ3_S] = {"iq3_s", 256, 110, false},
    [DAIS_IQ2_S] = {"iq2_s", 256, 82, false},
    [DAIS_IQ4_XS] = {"iq4_xs", 256, 136, false},
    [DAIS_I8] = {"i8", 1, 1, false},
    [DAIS_I16] = {"i16", 1, 2, false},
    [DAIS_I32] = {"i32", 1, 4, false},
    [DAIS_I64] = {"i64", 1, 8, false},
    [DAIS_F64] = {"f64", 1, 8, false},
    [DAIS_IQ1_M] = {"iq1_m", 256, 56, false},
    [DAIS_BF16] = {"bf16", 1, 2, true},
    [DAIS_TQ1_0] = {"tq1_0", 256, 54, false},
    [DAIS_TQ2_0] = {"tq2_0", 256, 66, false},
    [DAIS_MXFP4] = {"mxfp4", 32, 17, false},
};

const dais_dtype_info *dais_dtype_get(uint32_t type)
{
    if (type >= DAIS_DTYPE_MAX || table[type].name == NULL) return NULL;
    return &table[type];
}

const char *dais_dtype_name(uint32_t type)
{
    const dais_dtype_info *t = dais_dtype_get(type);
    return t ? t->name : "unknown";
}

int dais_dtype_from_name(const char *name)
{
    for (int i = 0; i < DAIS_DTYPE_MAX; i++)
        if (table[i].name != NULL && strcasecmp(table[i].name, name) == 0) return i;
    return -1;
}

size_t dais_dtype_row_bytes(uint32_t type, uint64_t n, bool *overflow)
{
    const dais_dtype_info *t = dais_dtype_get(type);
    if (overflow != NULL) *overflow = false;
    if (t == NULL || n % t->block != 0) return 0;
    uint64_t blocks = n / t->block;
    if (blocks > SIZE_MAX / t->bytes) {
        if (overflow != NULL) *overflow = true;
        return 0;
    }
    return (size_t)(blocks * t->bytes);
}
