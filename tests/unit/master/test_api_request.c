/* Unit tests for src/master/api_request.c: every field's type and range, and bad JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "master/api_request.h"

static const dais_api_limits LIM = {.default_max_tokens = 128, .max_tokens_limit = 4096};

static int parse(const char *s, dais_api_request *r, dais_api_error *e)
{
    return dais_api_request_parse(s, strlen(s), &LIM, r, e);
}

static void test_full_request(void **state)
{
    (void)state;
    dais_api_request r;
    dais_api_error e;
    const char *body =
        "{\"model\":\"stories260K\",\"prompt\":\"Once upon a time\",\"max_tokens\":60,"
        "\"temperature\":0,\"top_k\":40,\"top_p\":0.9,\"min_p\":0.05,"
        "\"repeat_penalty\":1.1,\"repeat_last_n\":32,\"seed\":42,"
        "\"stop\":[\"\\n\",\"The end\"],\"stream\":true}";
    assert_int_equal(parse(body, &r, &e), 0);
    assert_string_equal(r.model, "stories260K");
    assert_string_equal(r.prompt, "Once upon a time");
    assert_int_equal(r.prompt_len, 16);
    assert_int_equal(r.params.max_tokens, 60);
    assert_true(r.params.temperature == 0.0f);
    assert_int_equal(r.params.top_k, 40);
    assert_true(r.params.top_p > 0.89f && r.params.top_p < 0.91f);
    assert_true(r.params.min_p > 0.04f && r.params.min_p < 0.06f);
    assert_true(r.params.repeat_penalty > 1.09f && r.params.repeat_penalty < 1.11f);
    assert_int_equal(r.params.repeat_last_n, 32);
    assert_true(r.seed_set);
    assert_int_equal(r.params.seed, 42);
    assert_int_equal(r.params.n_stop, 2);
    assert_string_equal(r.params.stop[0], "\n");
    assert_string_equal(r.params.stop[1], "The end");
    assert_true(r.stream);
    dais_api_request_clear(&r);
}

static void test_defaults(void **state)
{
    (void)state;
    dais_api_request r;
    dais_api_error e;
    assert_int_equal(parse("{\"prompt\":\"\",\"stop\":\"x\"}", &r, &e), 0);
    assert_string_equal(r.model, "");
    assert_int_equal(r.prompt_len, 0);
    assert_int_equal(r.params.max_tokens, 128);
    assert_false(r.seed_set);
    assert_false(r.stream);
    assert_int_equal(r.params.n_stop, 1);
    dais_api_request_clear(&r);
}

static void expect_field(const char *body, const char *code, const char *field)
{
    dais_api_request r;
    dais_api_error e;
    int rc = parse(body, &r, &e);
    assert_int_equal(rc, DAIS_EINVAL);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, code);
    assert_string_equal(e.field, field);
    assert_non_null(strstr(e.message, field));
    assert_null(r.prompt);
}

static void test_field_errors(void **state)
{
    (void)state;
    expect_field("{}", "missing_field", "prompt");
    expect_field("{\"prompt\":1}", "invalid_field", "prompt");
    expect_field("{\"prompt\":\"a\",\"max_tokens\":0}", "invalid_field", "max_tokens");
    expect_field("{\"prompt\":\"a\",\"max_tokens\":4097}", "invalid_field", "max_tokens");
    expect_field("{\"prompt\":\"a\",\"max_tokens\":1.5}", "invalid_field", "max_tokens");
    expect_field("{\"prompt\":\"a\",\"max_tokens\":\"5\"}", "invalid_field", "max_tokens");
    expect_field("{\"prompt\":\"a\",\"temperature\":-0.1}", "invalid_field", "temperature");
    expect_field("{\"prompt\":\"a\",\"temperature\":\"hot\"}", "invalid_field", "temperature");
    expect_field("{\"prompt\":\"a\",\"top_p\":0}", "invalid_field", "top_p");
    expect_field("{\"prompt\":\"a\",\"top_p\":1.5}", "invalid_field", "top_p");
    expect_field("{\"prompt\":\"a\",\"top_k\":-1}", "invalid_field", "top_k");
    expect_field("{\"prompt\":\"a\",\"min_p\":2}", "invalid_field", "min_p");
    expect_field("{\"prompt\":\"a\",\"repeat_penalty\":0}", "invalid_field", "repeat_penalty");
    expect_field("{\"prompt\":\"a\",\"seed\":-1}", "invalid_field", "seed");
    expect_field("{\"prompt\":\"a\",\"seed\":9007199254740993}", "invalid_field", "seed");
    expect_field("{\"prompt\":\"a\",\"repeat_last_n\":4097}", "invalid_field", "repeat_last_n");
    expect_field("{\"prompt\":\"a\",\"stop\":5}", "invalid_field", "stop");
    expect_field("{\"prompt\":\"a\",\"stop\":[\"\"]}", "invalid_field", "stop");
    expect_field(
        "{\"prompt\":\"a\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}",
        "invalid_field", "stop");
    expect_field("{\"prompt\":\"a\",\"stream\":1}", "invalid_field", "stream");
    expect_field("{\"prompt\":\"a\",\"model\":\"\"}", "invalid_field", "model");
    expect_field("{\"prompt\":\"a\",\"max_token\":5}", "unknown_field", "max_token");
}

static void test_bad_json(void **state)
{
    (void)state;
    dais_api_request r;
    dais_api_error e;
    assert_int_equal(parse("{\"prompt\": \"a\",\n  \"max_tokens\": }", &r, &e), DAIS_EFORMAT);
    assert_string_equal(e.code, "invalid_json");
    assert_int_equal(e.line, 2);
    assert_true(e.column > 0);
    assert_int_equal(parse("", &r, &e), DAIS_EFORMAT);
    assert_int_equal(parse("{\"prompt\":\"a\",\"prompt\":\"b\"}", &r, &e), DAIS_EFORMAT);
    assert_int_equal(parse("{\"prompt\":\"a\\u0000b\"}", &r, &e), DAIS_EFORMAT);
    assert_int_equal(parse("[1,2]", &r, &e), DAIS_EINVAL);
    assert_string_equal(e.code, "invalid_json");
    /* invalid UTF-8 */
    assert_int_equal(parse("{\"prompt\":\"\xff\"}", &r, &e), DAIS_EFORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_request),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_field_errors),
        cmocka_unit_test(test_bad_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
