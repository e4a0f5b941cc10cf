/* test_age_vectors.c — every C2SP CCTV age vector in vectors/age/.
 *
 * Each file is a textual header (expect, payload hash, identities, ...), a
 * blank line, then an age file, maybe zlib-compressed (see FORMAT.md). The
 * families Chute implements must give exactly the expected outcome; the
 * others (scrypt, armor, hybrid) must be refused cleanly. */
#include <dirent.h>
#include <sodium.h>
#include <stdbool.h>
#include <zlib.h>

#include "age.h"
#include "hexutil.h"
#include "unit.h"

#define MAX_IDS 8

static const char *supported[] = {"x25519", "stream", "hmac", "header",
                                  "stanza", "version", "empty"};
#define N_SUPPORTED (sizeof supported / sizeof *supported)

struct vector {
    char name[256];
    char expect[64];
    uint8_t payload_hash[32];
    bool has_hash, compressed, armored;
    char identity[MAX_IDS][256];
    size_t n_ids;
    uint8_t *body;
    size_t body_len;
};

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            uint8_t *grown = realloc(buf, cap *= 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    *len = n;
    return buf;
}

static uint8_t *inflate_all(const uint8_t *in, size_t in_len, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK)
        return NULL;
    size_t cap = 1 << 20, n = 0;
    uint8_t *out = malloc(cap);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)in_len;
    int zr = Z_OK;
    while (out && zr == Z_OK) {
        if (n == cap) {
            uint8_t *grown = realloc(out, cap *= 2);
            if (!grown) {
                free(out);
                out = NULL;
                break;
            }
            out = grown;
        }
        z.next_out = out + n;
        z.avail_out = (uInt)(cap - n);
        zr = inflate(&z, Z_NO_FLUSH);
        n = cap - z.avail_out;
    }
    inflateEnd(&z);
    if (zr != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    *out_len = n;
    return out;
}

static bool load_vector(const char *dir, const char *name, struct vector *v)
{
    char path[2048];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return false;
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", name);
    size_t len = 0;
    uint8_t *raw = read_file(path, &len);
    if (!raw)
        return false;
    size_t pos = 0;
    for (;;) {
        uint8_t *nl = memchr(raw + pos, '\n', len - pos);
        if (!nl) {
            free(raw);
            return false;
        }
        size_t line_len = (size_t)(nl - (raw + pos));
        char line[512];
        if (line_len >= sizeof line) {
            free(raw);
            return false;
        }
        memcpy(line, raw + pos, line_len);
        line[line_len] = '\0';
        pos += line_len + 1;
        if (line_len == 0)
            break;
        char *sep = strstr(line, ": ");
        if (!sep)
            continue;
        *sep = '\0';
        const char *value = sep + 2;
        if (strcmp(line, "expect") == 0)
            snprintf(v->expect, sizeof v->expect, "%s", value);
        else if (strcmp(line, "payload") == 0)
            v->has_hash = unhex(v->payload_hash, 32, value) == 32;
        else if (strcmp(line, "compressed") == 0)
            v->compressed = strcmp(value, "zlib") == 0;
        else if (strcmp(line, "armored") == 0)
            v->armored = strcmp(value, "yes") == 0;
        else if (strcmp(line, "identity") == 0 && v->n_ids < MAX_IDS)
            snprintf(v->identity[v->n_ids++], 256, "%s", value);
    }
    if (v->compressed) {
        v->body = inflate_all(raw + pos, len - pos, &v->body_len);
    } else {
        v->body_len = len - pos;
        v->body = malloc(v->body_len + 1);
        if (v->body)
            memcpy(v->body, raw + pos, v->body_len);
    }
    free(raw);
    return v->body != NULL;
}

struct outcome {
    chute_status st;
    bool header_ok;
    uint8_t hash[32];
    size_t released;
};

/* Decrypts the vector's file, fed in pieces of `piece` bytes. */
static void decrypt_vector(const struct vector *v, size_t piece,
                           struct outcome *o)
{
    age_identity ids[MAX_IDS];
    memset(o, 0, sizeof *o);
    o->st = CHUTE_OK;
    for (size_t i = 0; i < v->n_ids && o->st == CHUTE_OK; i++)
        o->st = age_identity_parse(&ids[i], v->identity[i]);
    if (o->st != CHUTE_OK)
        return;
    age_decryptor *d = NULL;
    CHECK_EQ_INT(age_decryptor_new(&d, ids, v->n_ids), CHUTE_OK);
    for (size_t i = 0; i < v->n_ids; i++)
        age_identity_wipe(&ids[i]);
    if (!d) {
        o->st = CHUTE_ERR_NOMEM;
        return;
    }
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    static uint8_t out[100000];
    size_t pos = 0;
    bool done = false;
    while (o->st == CHUTE_OK && !done) {
        size_t n = v->body_len - pos < piece ? v->body_len - pos : piece;
        age_io io = {v->body + pos, n, out, sizeof out};
        if (n > 0)
            o->st = age_decryptor_update(d, &io);
        else
            o->st = age_decryptor_finish(d, &io, &done);
        crypto_hash_sha256_update(&h, out, sizeof out - io.out_len);
        o->released += sizeof out - io.out_len;
        pos += n - io.in_len;
    }
    uint8_t mac[AGE_MAC_BYTES];
    o->header_ok = age_decryptor_header_mac(d, mac) == CHUTE_OK;
    crypto_hash_sha256_final(&h, o->hash);
    age_decryptor_free(d);
}

static bool outcome_matches(const struct vector *v, const struct outcome *o)
{
    const char *e = v->expect;
    bool hash_ok = v->has_hash && memcmp(o->hash, v->payload_hash, 32) == 0;
    if (strcmp(e, "success") == 0)
        return o->st == CHUTE_OK && hash_ok;
    if (strcmp(e, "no match") == 0)
        return o->st == CHUTE_ERR_NO_MATCH && o->released == 0;
    if (strcmp(e, "HMAC failure") == 0)
        return o->st == CHUTE_ERR_HMAC && o->released == 0;
    if (strcmp(e, "header failure") == 0)
        return (o->st == CHUTE_ERR_MALFORMED ||
                o->st == CHUTE_ERR_UNSUPPORTED) && o->released == 0;
    if (strcmp(e, "payload failure") == 0)
        return (o->st == CHUTE_ERR_AUTH || o->st == CHUTE_ERR_TRUNCATED ||
                o->st == CHUTE_ERR_MALFORMED) && o->header_ok && hash_ok;
    return false;
}

static bool same_outcome(const struct outcome *a, const struct outcome *b)
{
    return a->st == b->st && a->header_ok == b->header_ok &&
           a->released == b->released && memcmp(a->hash, b->hash, 32) == 0;
}

static int family_index(const char *name)
{
    for (size_t i = 0; i < N_SUPPORTED; i++) {
        size_t n = strlen(supported[i]);
        if (strncmp(name, supported[i], n) == 0 &&
            (name[n] == '_' || name[n] == '\0'))
            return (int)i;
    }
    return -1;
}

static void test_every_cctv_vector(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/age", unit_vectors_dir());
    DIR *dh = opendir(dir);
    CHECK(dh != NULL);
    if (!dh)
        return;
    int ran[N_SUPPORTED] = {0}, refused = 0, total = 0;
    struct dirent *de;
    while ((de = readdir(dh)) != NULL) {
        const char *name = de->d_name;
        if (name[0] == '.' || strcmp(name, "FORMAT.md") == 0 ||
            strcmp(name, "LICENSE") == 0)
            continue;
        struct vector v;
        bool loaded = load_vector(dir, name, &v);
        CHECK(loaded);
        if (!loaded) {
            fprintf(stderr, "    cannot load %s\n", name);
            free(v.body);
            continue;
        }
        total++;
        /* All at once, and in odd pieces down to single bytes, so that
         * every split of header, nonce and chunks is exercised. */
        struct outcome whole, pieces, bytes;
        decrypt_vector(&v, v.body_len + 1, &whole);
        decrypt_vector(&v, 4099, &pieces);
        decrypt_vector(&v, 1, &bytes);
        CHECK(same_outcome(&whole, &pieces) && same_outcome(&whole, &bytes));
        int fam = family_index(name);
        if (fam >= 0) {
            bool ok = outcome_matches(&v, &whole);
            CHECK(ok);
            if (!ok)
                fprintf(stderr, "    %s: expect %s, got %s\n", name,
                        v.expect, chute_strstatus(whole.st));
            ran[fam]++;
        } else {
            /* scrypt, armor, hybrid: Chute never makes these; a clean
             * refusal (no crash, no plaintext) is the expected answer. */
            CHECK(whole.st != CHUTE_OK && pieces.st != CHUTE_OK);
            CHECK_EQ_INT(whole.released, 0);
            refused++;
        }
        free(v.body);
    }
    closedir(dh);
    for (size_t i = 0; i < N_SUPPORTED; i++) {
        printf("     %-8s %3d vectors\n", supported[i], ran[i]);
        CHECK(ran[i] > 0);
    }
    printf("     refused  %3d vectors (scrypt, armor, hybrid)\n", refused);
    printf("     total    %3d vectors\n", total);
    CHECK(total >= 143); /* 145 files less FORMAT.md and LICENSE */
}

int main(void)
{
    RUN(test_every_cctv_vector);
    return unit_done();
}
