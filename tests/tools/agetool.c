/* agetool — a thin command line over lib/age, for interop tests with the
 * stock age command.
 *
 *   agetool keygen                      identity file to stdout
 *   agetool recipient -i KEYFILE        the identity's age1... recipient
 *   agetool encrypt -r age1... [-r ...] plaintext on stdin, age on stdout
 *   agetool decrypt -i KEYFILE [-i ...] age on stdin, plaintext on stdout
 *
 * Exit status: 0 done, 1 the input was refused (bad file, wrong key),
 * 2 usage or I/O error. Messages go to stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "age.h"

#define MAX_KEYS 16

static int usage(void)
{
    fprintf(stderr,
            "usage: agetool keygen\n"
            "       agetool recipient -i KEYFILE\n"
            "       agetool encrypt -r RECIPIENT [-r RECIPIENT]...\n"
            "       agetool decrypt -i KEYFILE [-i KEYFILE]...\n");
    return 2;
}

/* A status from the file itself is a refusal (1); anything else is 2. */
static int fail(const char *what, chute_status st)
{
    fprintf(stderr, "agetool: %s: %s%s%s\n", what, chute_strstatus(st),
            st == CHUTE_ERR_IO ? ": " : "",
            st == CHUTE_ERR_IO ? strerror(errno) : "");
    switch (st) {
    case CHUTE_ERR_MALFORMED: case CHUTE_ERR_UNSUPPORTED:
    case CHUTE_ERR_NO_MATCH: case CHUTE_ERR_HMAC: case CHUTE_ERR_AUTH:
    case CHUTE_ERR_TRUNCATED: case CHUTE_ERR_LIMIT:
        return 1;
    default:
        return 2;
    }
}

/* Reads identities from an age-keygen style file: one key a line,
 * blank lines and # comments ignored. */
static int load_identities(const char *path, age_identity *ids, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "agetool: %s: %s\n", path, strerror(errno));
        return 2;
    }
    char line[1024];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0' || line[0] == '#')
            continue;
        if (*n == MAX_KEYS) {
            fprintf(stderr, "agetool: too many identities\n");
            rc = 2;
            break;
        }
        chute_status st = age_identity_parse(&ids[*n], line);
        if (st != CHUTE_OK) {
            fprintf(stderr, "agetool: %s: identity: %s\n", path,
                    chute_strstatus(st));
            rc = 2;
            break;
        }
        (*n)++;
    }
    fclose(f);
    sodium_memzero(line, sizeof line);
    if (rc == 0 && *n == 0) {
        fprintf(stderr, "agetool: %s: no identity\n", path);
        rc = 2;
    }
    return rc;
}

static int cmd_keygen(void)
{
    age_identity id;
    age_recipient r;
    char is[AGE_IDENTITY_STR_BYTES], rs[AGE_RECIPIENT_STR_BYTES];
    chute_status st = age_identity_generate(&id);
    if (st == CHUTE_OK) {
        age_identity_recipient(&id, &r);
        st = age_identity_encode(&id, is);
    }
    if (st == CHUTE_OK)
        st = age_recipient_encode(&r, rs);
    age_identity_wipe(&id);
    if (st != CHUTE_OK)
        return fail("keygen", st);
    printf("# public key: %s\n%s\n", rs, is);
    sodium_memzero(is, sizeof is);
    return fflush(stdout) == 0 ? 0 : 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    age_identity ids[MAX_KEYS];
    age_recipient rcpts[MAX_KEYS];
    size_t n_ids = 0, n_rcpts = 0;
    int opt, rc = 0;

    if (strcmp(cmd, "keygen") == 0)
        return argc == 2 ? cmd_keygen() : usage();
    optind = 2;
    while (rc == 0 && (opt = getopt(argc, argv, "i:r:")) != -1) {
        if (opt == 'i') {
            rc = load_identities(optarg, ids, &n_ids);
        } else if (opt == 'r' && n_rcpts < MAX_KEYS) {
            chute_status st = age_recipient_parse(&rcpts[n_rcpts], optarg);
            if (st != CHUTE_OK) {
                fprintf(stderr, "agetool: recipient %s: %s\n", optarg,
                        chute_strstatus(st));
                rc = 2;
            }
            n_rcpts++;
        } else {
            rc = usage();
        }
    }
    if (rc == 0 && optind != argc)
        rc = usage();

    if (rc != 0) {
        /* already reported */
    } else if (strcmp(cmd, "recipient") == 0 && n_ids == 1 && !n_rcpts) {
        age_recipient r;
        char rs[AGE_RECIPIENT_STR_BYTES];
        age_identity_recipient(&ids[0], &r);
        chute_status st = age_recipient_encode(&r, rs);
        rc = st == CHUTE_OK ? (printf("%s\n", rs) < 0 ? 2 : 0)
                            : fail("recipient", st);
    } else if (strcmp(cmd, "encrypt") == 0 && n_rcpts > 0 && !n_ids) {
        chute_status st = age_encrypt_fd(0, 1, rcpts, n_rcpts, NULL);
        rc = st == CHUTE_OK ? 0 : fail("encrypt", st);
    } else if (strcmp(cmd, "decrypt") == 0 && n_ids > 0 && !n_rcpts) {
        chute_status st = age_decrypt_fd(0, 1, ids, n_ids, NULL);
        rc = st == CHUTE_OK ? 0 : fail("decrypt", st);
    } else {
        rc = usage();
    }
    for (size_t i = 0; i < n_ids; i++)
        age_identity_wipe(&ids[i]);
    return rc;
}
