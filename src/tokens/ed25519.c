/* Ed25519 on nettle, plus the small-order public key refusal nettle and GnuTLS lack: under such a
 * key (e.g. the identity point) one fixed signature verifies for every message. */
#include "acmedge/tokens.h"

#include <nettle/eddsa.h>
#include <string.h>

void ae_ed25519_public(const uint8_t seed[32], uint8_t pub[32]) { ed25519_sha512_public_key(pub, seed); }

void ae_ed25519_sign(const uint8_t seed[32], const uint8_t pub[32], const uint8_t *msg, size_t n,
                     uint8_t sig[64]) {
  ed25519_sha512_sign(pub, seed, n, msg, sig);
}

int ae_ed25519_verify(const uint8_t pub[32], const uint8_t *msg, size_t n, const uint8_t sig[64]) {
  return ed25519_sha512_verify(pub, n, msg, sig) == 1;
}

/* Encodings of points of order 1, 2, 4 and 8 (the y coordinate, little endian, sign bit clear),
 * including the non-canonical y = p and y = p + 1; the same set libsodium refuses. */
static const uint8_t k_small_order[][32] = {
    {0},                                                            /* y = 0: order 4 */
    {1},                                                            /* y = 1: identity */
    {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
     0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05}, /* order 8 */
    {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
     0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a}, /* order 8 */
};

int ae_ed25519_weak_public(const uint8_t pub[32]) {
  uint8_t y[32];
  memcpy(y, pub, 32);
  y[31] &= 0x7f;
  for (size_t i = 0; i < AE_ARRAY_LEN(k_small_order); i++)
    if (memcmp(y, k_small_order[i], 32) == 0)
      return 1;
  /* y >= p = 2^255 - 19 is a non-canonical encoding; it covers p - 1 (order 2), p and p + 1. */
  int high = y[31] == 0x7f;
  for (int i = 1; i < 31 && high; i++)
    high = y[i] == 0xff;
  return high && y[0] >= 0xec;
}
