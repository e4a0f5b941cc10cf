/* test_peername.c — a peer's device name must read as what it is
 * (PROTOCOL §7.4): no character that shows as nothing or as a plain
 * space, so "home" and a lookalike of it are not two folders that read
 * the same. The older rules (separators, controls, bidi) are in
 * test_devstate.c. */
#include "peername.h"
#include "unit.h"

#include <stdint.h>

/* cp as UTF-8 into out (5 bytes), NUL-terminated. */
static void utf8(uint32_t cp, char out[5])
{
    size_t n = 0;
    if (cp < 0x80) {
        out[n++] = (char)cp;
    } else if (cp < 0x800) {
        out[n++] = (char)(0xC0 | (cp >> 6));
        out[n++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out[n++] = (char)(0xE0 | (cp >> 12));
        out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[n++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[n++] = (char)(0xF0 | (cp >> 18));
        out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[n++] = (char)(0x80 | (cp & 0x3F));
    }
    out[n] = '\0';
}

/* before + cp + after into name[24]. */
static const char *with(const char *before, uint32_t cp, const char *after,
                        char name[24])
{
    char c[5];
    utf8(cp, c);
    snprintf(name, 24, "%s%s%s", before, c, after);
    return name;
}

/* 1 if cp is refused alone, and before, inside and after "home". */
static int refused_anywhere(uint32_t cp)
{
    char n[24];
    return !peername_ok(with("", cp, "", n)) && !peername_ok(with("", cp, "home", n)) &&
           !peername_ok(with("ho", cp, "me", n)) && !peername_ok(with("home", cp, "", n));
}

/* 1 if cp is a good name character: alone and inside "home". */
static int allowed(uint32_t cp)
{
    char n[24];
    return peername_ok(with("", cp, "", n)) && peername_ok(with("ho", cp, "me", n));
}

/* The reviewer's case: a second "home" with a tag character after it got
 * a folder that reads "home" instead of "home-2". */
static void test_home_followed_by_an_invisible_character_is_refused(void)
{
    CHECK(peername_ok("home"));
    CHECK(!peername_ok("home\U000E0020"));   /* TAG SPACE */
    CHECK(!peername_ok("home\u3164"));       /* HANGUL FILLER */
    CHECK(!peername_ok("home\uFE0F"));       /* VARIATION SELECTOR-16 */
    CHECK(!peername_ok("home\u00A0"));       /* NO-BREAK SPACE */
    CHECK(!peername_ok("home\u2800"));       /* BRAILLE PATTERN BLANK */
}

static void test_a_name_of_invisible_characters_is_refused(void)
{
    CHECK(!peername_ok("\u3164"));
    CHECK(!peername_ok("\u3164\u3164\u3164"));
    CHECK(!peername_ok("\u115F\u1160"));
    CHECK(!peername_ok("\uFFA0"));
    CHECK(!peername_ok("\u2800\u2800"));
    CHECK(!peername_ok("\U000E0068\U000E006F\U000E006D\U000E0065"));   /* "home" in tags */
    CHECK(!peername_ok("\u00A0"));
    CHECK(!peername_ok("\u3000"));
    CHECK(!peername_ok("\u0301"));
    CHECK(!peername_ok("\u0301\u0302\u0303"));
    CHECK(!peername_ok(" "));
    CHECK(!peername_ok("   "));
    CHECK(peername_ok("x"));
    CHECK(peername_ok("\u4E00"));            /* 一, CJK "one": a single visible stroke */
}

static void test_format_characters_are_refused(void)
{
    /* General_Category Cf beyond the bidi and zero-width ones. */
    CHECK(refused_anywhere(0x0600));      /* ARABIC NUMBER SIGN */
    CHECK(refused_anywhere(0x0605));
    CHECK(refused_anywhere(0x06DD));
    CHECK(refused_anywhere(0x070F));
    CHECK(refused_anywhere(0x0890));
    CHECK(refused_anywhere(0x08E2));
    CHECK(refused_anywhere(0x180E));      /* MONGOLIAN VOWEL SEPARATOR */
    CHECK(refused_anywhere(0x206A));
    CHECK(refused_anywhere(0x206F));
    CHECK(refused_anywhere(0xFFF9));
    CHECK(refused_anywhere(0xFFFB));
    CHECK(refused_anywhere(0x110BD));
    CHECK(refused_anywhere(0x110CD));
    CHECK(refused_anywhere(0x13430));
    CHECK(refused_anywhere(0x1343F));
    CHECK(refused_anywhere(0x1BCA0));
    CHECK(refused_anywhere(0x1BCA3));
    CHECK(refused_anywhere(0x1D173));
    CHECK(refused_anywhere(0x1D17A));
    CHECK(refused_anywhere(0xE0001));     /* LANGUAGE TAG */
    CHECK(refused_anywhere(0xE0020));
    CHECK(refused_anywhere(0xE007F));     /* CANCEL TAG */
    /* the neighbours are ordinary characters */
    CHECK(allowed(0x0606));
    CHECK(allowed(0x1342E));              /* EGYPTIAN HIEROGLYPH AA032 */
}

static void test_line_and_paragraph_separators_are_refused(void)
{
    CHECK(refused_anywhere(0x2028));
    CHECK(refused_anywhere(0x2029));
    CHECK(allowed(0x2027));               /* HYPHENATION POINT */
}

static void test_spaces_other_than_the_ascii_space_are_refused(void)
{
    CHECK(refused_anywhere(0x00A0));
    CHECK(refused_anywhere(0x1680));
    CHECK(refused_anywhere(0x2000));
    CHECK(refused_anywhere(0x2007));
    CHECK(refused_anywhere(0x200A));
    CHECK(refused_anywhere(0x202F));
    CHECK(refused_anywhere(0x205F));
    CHECK(refused_anywhere(0x3000));
    CHECK(peername_ok("Anna's laptop"));
    CHECK(peername_ok("a b c"));
}

static void test_a_space_at_either_end_is_refused(void)
{
    CHECK(!peername_ok(" home"));
    CHECK(!peername_ok("home "));
    CHECK(!peername_ok(" home "));
    CHECK(peername_ok("my home"));
}

static void test_fillers_and_blank_looking_characters_are_refused(void)
{
    CHECK(refused_anywhere(0x115F));      /* HANGUL CHOSEONG FILLER */
    CHECK(refused_anywhere(0x1160));      /* HANGUL JUNGSEONG FILLER */
    CHECK(refused_anywhere(0x3164));      /* HANGUL FILLER */
    CHECK(refused_anywhere(0xFFA0));      /* HALFWIDTH HANGUL FILLER */
    CHECK(refused_anywhere(0x2800));      /* BRAILLE PATTERN BLANK */
    CHECK(allowed(0x2801));               /* BRAILLE PATTERN DOTS-1 */
    CHECK(allowed(0x3165));
    CHECK(peername_ok("\uD55C\uAD6D"));      /* 한국 */
}

static void test_variation_selectors_and_other_ignorables_are_refused(void)
{
    CHECK(refused_anywhere(0xFE00));
    CHECK(refused_anywhere(0xFE0F));
    CHECK(refused_anywhere(0xE0100));
    CHECK(refused_anywhere(0xE01EF));
    CHECK(refused_anywhere(0x034F));      /* COMBINING GRAPHEME JOINER */
    CHECK(refused_anywhere(0x17B4));
    CHECK(refused_anywhere(0x17B5));
    CHECK(refused_anywhere(0x180B));
    CHECK(refused_anywhere(0x180F));
    CHECK(refused_anywhere(0x2065));
    CHECK(refused_anywhere(0xFFF0));
    CHECK(refused_anywhere(0xE0000));
    CHECK(refused_anywhere(0xE0FFF));
    /* an emoji is a name of its own, without the presentation selector */
    CHECK(!peername_ok("\u2764\uFE0F"));
    CHECK(peername_ok("\u2764"));
    CHECK(peername_ok("Anna's \U0001F4F1"));
    CHECK(allowed(0xFE10));
}

static void test_private_use_and_noncharacters_are_refused(void)
{
    CHECK(refused_anywhere(0xE000));
    CHECK(refused_anywhere(0xF8FF));
    CHECK(refused_anywhere(0xF0000));
    CHECK(refused_anywhere(0x10FFFD));
    CHECK(refused_anywhere(0xFDD0));
    CHECK(refused_anywhere(0xFDEF));
    CHECK(refused_anywhere(0xFFFE));
    CHECK(refused_anywhere(0xFFFF));
    CHECK(refused_anywhere(0x1FFFE));
    CHECK(refused_anywhere(0x10FFFF));
    CHECK(allowed(0xF900));               /* CJK COMPATIBILITY IDEOGRAPH */
    CHECK(allowed(0xFDF0));
    CHECK(allowed(0x1F600));              /* GRINNING FACE */
}

static void test_a_combining_mark_is_refused_only_at_the_start(void)
{
    CHECK(!peername_ok("\u0301home"));       /* COMBINING ACUTE ACCENT (Mn) */
    CHECK(!peername_ok("\u20DDhome"));       /* COMBINING ENCLOSING CIRCLE (Me) */
    CHECK(!peername_ok("\u0903home"));       /* DEVANAGARI SIGN VISARGA (Mc) */
    CHECK(!peername_ok("\u093F\u0915"));     /* a vowel sign before its consonant */
    CHECK(!peername_ok("\U0001E944x"));      /* ADLAM ALIF LENGTHENER, a mark beyond the BMP */
    CHECK(peername_ok("cafe\u0301"));        /* café, decomposed */
    CHECK(peername_ok("caf\u00E9"));         /* café, precomposed */
    CHECK(peername_ok("\u0939\u093F\u0928\u094D\u0926\u0940"));   /* हिन्दी */
    CHECK(peername_ok("\u0628\u064E\u0627\u0628"));               /* Arabic with a vowel mark */
}

int main(void)
{
    RUN(test_home_followed_by_an_invisible_character_is_refused);
    RUN(test_a_name_of_invisible_characters_is_refused);
    RUN(test_format_characters_are_refused);
    RUN(test_line_and_paragraph_separators_are_refused);
    RUN(test_spaces_other_than_the_ascii_space_are_refused);
    RUN(test_a_space_at_either_end_is_refused);
    RUN(test_fillers_and_blank_looking_characters_are_refused);
    RUN(test_variation_selectors_and_other_ignorables_are_refused);
    RUN(test_private_use_and_noncharacters_are_refused);
    RUN(test_a_combining_mark_is_refused_only_at_the_start);
    return unit_done();
}
