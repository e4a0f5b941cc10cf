/* status.c — descriptions of chute_status values. */
#include "status.h"

const char *chute_strstatus(chute_status st)
{
    switch (st) {
    case CHUTE_OK:              return "ok";
    case CHUTE_ERR_NOMEM:       return "out of memory";
    case CHUTE_ERR_IO:          return "input/output error";
    case CHUTE_ERR_ARG:         return "invalid argument";
    case CHUTE_ERR_MALFORMED:   return "malformed input";
    case CHUTE_ERR_UNSUPPORTED: return "unsupported feature";
    case CHUTE_ERR_NO_MATCH:    return "no identity matches any recipient";
    case CHUTE_ERR_HMAC:        return "header MAC does not verify";
    case CHUTE_ERR_AUTH:        return "authentication failed";
    case CHUTE_ERR_TRUNCATED:   return "input is truncated";
    case CHUTE_ERR_CRYPTO:      return "cryptographic operation refused";
    case CHUTE_ERR_NOT_FOUND:   return "not found";
    case CHUTE_ERR_EXISTS:      return "already exists";
    case CHUTE_ERR_EXPIRED:     return "expired";
    case CHUTE_ERR_NETWORK:     return "relay unreachable";
    case CHUTE_ERR_PROTOCOL:    return "protocol violation";
    case CHUTE_ERR_REFUSED:     return "refused";
    case CHUTE_ERR_DB:          return "database error";
    case CHUTE_ERR_LIMIT:       return "limit exceeded";
    case CHUTE_ERR_FULL:        return "no space left on the device";
    case CHUTE_STATUS_COUNT:    break;
    }
    return "unknown status";
}
