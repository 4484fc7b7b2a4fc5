/* Private to the storage family: authenticated encryption of private keys at rest. */
#ifndef AE_STORAGE_SEAL_H
#define AE_STORAGE_SEAL_H

#include <stddef.h>
#include "acmedge/common.h"

/* 1 when value looks like ae_seal output. */
int ae_seal_is_sealed(const char *value, size_t len);
/* Encrypts plain with AES-256-GCM, ad as associated data; *out malloc'd text, caller frees. */
int ae_seal(const unsigned char key[32], const char *ad, const void *plain, size_t len, char **out, ae_err *err);
/* Opens an ae_seal value under the same ad; *out malloc'd NUL-terminated, caller frees.
 * AE_EPROTO (message naming ad) when the value was altered, moved or sealed with another key. */
int ae_unseal(const unsigned char key[32], const char *ad, const char *value, size_t len, char **out, size_t *outlen,
              ae_err *err);

#endif
