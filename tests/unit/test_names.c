/* test_names.c — hostile names from a peer, collision variants, temp rule. */
#include "names.h"
#include "unit.h"

static void san(const char *in, size_t len, char out[NAMES_MAX + 1])
{
    CHECK_EQ_INT(names_sanitize(in, len, out), CHUTE_OK);
    CHECK(strchr(out, '/') == NULL);
    CHECK(strlen(out) > 0 && strlen(out) <= NAMES_SANE_MAX + 1);
    CHECK(names_utf8_valid(out, strlen(out)));
    CHECK(strcmp(out, ".") != 0 && strcmp(out, "..") != 0);
    for (const char *p = out; *p; p++) CHECK((unsigned char)*p >= 0x20 && *p != 0x7F);
}

static void test_plain_names_unchanged(void)
{
    char o[NAMES_MAX + 1];
    san("report.pdf", 10, o); CHECK(strcmp(o, "report.pdf") == 0);
    san("Grüße – ☃.txt", strlen("Grüße – ☃.txt"), o);
    CHECK(strcmp(o, "Grüße – ☃.txt") == 0);
    san(".hidden", 7, o); CHECK(strcmp(o, ".hidden") == 0);
}

static void test_traversal(void)
{
    char o[NAMES_MAX + 1];
    san("../etc/passwd", 13, o); CHECK(strcmp(o, ".._etc_passwd") == 0);
    san("/abs", 4, o); CHECK(strcmp(o, "_abs") == 0);
    san("..", 2, o); CHECK(strcmp(o, "_..") == 0);
    san(".", 1, o); CHECK(strcmp(o, "_.") == 0);
    san("a\\b", 3, o); CHECK(strcmp(o, "a_b") == 0);
}

static void test_controls_and_empty(void)
{
    char o[NAMES_MAX + 1];
    san("a\nb", 3, o); CHECK(strcmp(o, "a_b") == 0);
    san("a\0b", 3, o); CHECK(strcmp(o, "a_b") == 0);
    san("\x1b[31mred", 8, o); CHECK(strcmp(o, "_[31mred") == 0);
    san("a\xc2\x85" "b", 4, o); CHECK(strcmp(o, "a_b") == 0);  /* NEL, C1 */
    san("", 0, o); CHECK(strcmp(o, "unnamed") == 0);
    san("   ", 3, o); CHECK(strcmp(o, "unnamed") == 0);
    san("  x  ", 5, o); CHECK(strcmp(o, "x") == 0);
    CHECK_EQ_INT(names_sanitize(NULL, 1, o), CHUTE_ERR_ARG);
}

static void test_invalid_utf8(void)
{
    char o[NAMES_MAX + 1];
    san("a\xff" "b", 3, o); CHECK(strcmp(o, "a_b") == 0);
    san("\xc0\xaf", 2, o); CHECK(strcmp(o, "__") == 0);        /* overlong '/' */
    san("\xed\xa0\x80", 3, o); CHECK(strcmp(o, "___") == 0);   /* surrogate */
    san("\xe2\x98", 2, o); CHECK(strcmp(o, "__") == 0);        /* truncated */
}

static void test_long_names_bounded_on_boundary(void)
{
    char o[NAMES_MAX + 1];
    char *big = malloc(10000);
    CHECK(big != NULL);
    if (!big) return;
    memset(big, 'a', 10000);
    san(big, 10000, o); CHECK_EQ_INT(strlen(o), NAMES_SANE_MAX);
    /* 3-byte characters never split: 240 is a multiple of 3, use 4-byte. */
    for (int i = 0; i + 4 <= 10000; i += 4) memcpy(big + i, "\xf0\x9f\x98\x80", 4);
    san(big, 10000, o);
    CHECK(strlen(o) % 4 == 0 && strlen(o) <= NAMES_SANE_MAX);
    free(big);
}

static void test_variants(void)
{
    char o[NAMES_MAX + 1];
    CHECK_EQ_INT(names_variant("x.pdf", 2, o), CHUTE_OK); CHECK(strcmp(o, "x (2).pdf") == 0);
    names_variant("noext", 3, o); CHECK(strcmp(o, "noext (3)") == 0);
    names_variant(".bashrc", 2, o); CHECK(strcmp(o, ".bashrc (2)") == 0);
    char big[NAMES_MAX + 1];
    memset(big, 'b', NAMES_MAX - 4); memcpy(big + NAMES_MAX - 4, ".txt", 5);
    CHECK_EQ_INT(names_variant(big, 1234, o), CHUTE_OK);
    CHECK_EQ_INT(strlen(o), NAMES_MAX);
    CHECK(strcmp(o + NAMES_MAX - 11, " (1234).txt") == 0);
    CHECK_EQ_INT(names_variant("x", 1, o), CHUTE_ERR_ARG);
}

static void test_temporary(void)
{
    CHECK(names_is_temporary(".x.swp"));
    CHECK(names_is_temporary("a~"));
    CHECK(names_is_temporary("movie.mkv.part"));
    CHECK(names_is_temporary("f.crdownload"));
    CHECK(names_is_temporary("f.tmp"));
    CHECK(!names_is_temporary("f.txt"));
    CHECK(!names_is_temporary("tmp"));
    CHECK(!names_is_temporary(""));
    CHECK(names_is_temporary_path("a/b/.x.swp"));
    CHECK(names_is_temporary_path(".~tmp~/f1"));
    CHECK(names_is_temporary_path("photos/.~tmp~/2026/a.jpg"));
    CHECK(!names_is_temporary_path("photos/2026/a.jpg"));
    CHECK(!names_is_temporary_path(".git/config"));       /* a dot folder travels */
    CHECK(!names_is_temporary_path("x.~tmp~/f1"));
    CHECK(!names_is_temporary_path(".~tmp~x/f1"));
    CHECK(names_is_temporary_path("f1/.~tmp~") == names_is_temporary(".~tmp~"));
    CHECK(!names_is_temporary_path(NULL));
}

/* Names that would show as something they are not. */
static void test_hidden_controls_and_wide_spaces(void)
{
    char o[NAMES_MAX + 1];
#define SAN(lit) san(lit, sizeof lit - 1, o)
    SAN("invoice\u202Efdp.exe"); CHECK(strcmp(o, "invoice_fdp.exe") == 0);   /* RLO */
    SAN("a\u2066b\u2069"); CHECK(strcmp(o, "a_b_") == 0);                   /* isolates */
    SAN("a\u200Fb\u200Bc"); CHECK(strcmp(o, "a_b_c") == 0);                 /* RLM, ZWSP */
    SAN("line\u2028two"); CHECK(strcmp(o, "line_two") == 0);
    SAN("\uFEFFbom"); CHECK(strcmp(o, "_bom") == 0);
    SAN("y\u00A0"); CHECK(strcmp(o, "y") == 0);                              /* NBSP */
    SAN("\u3000\u2003y\u202F"); CHECK(strcmp(o, "y") == 0);
    SAN("\u00A0\u00A0"); CHECK(strcmp(o, "unnamed") == 0);
    SAN("a\u00A0b"); CHECK(strcmp(o, "a\u00A0b") == 0);                     /* inside: kept */
    /* joiners that emoji and scripts need stay */
    SAN("\U0001F468\u200D\U0001F469.jpg"); CHECK(strcmp(o, "\U0001F468\u200D\U0001F469.jpg") == 0);
#undef SAN
}

int main(void)
{
    RUN(test_plain_names_unchanged);
    RUN(test_traversal);
    RUN(test_controls_and_empty);
    RUN(test_invalid_utf8);
    RUN(test_hidden_controls_and_wide_spaces);
    RUN(test_long_names_bounded_on_boundary);
    RUN(test_variants);
    RUN(test_temporary);
    return unit_done();
}
