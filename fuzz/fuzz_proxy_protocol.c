/* libFuzzer target for the PROXY protocol v2 parser. Besides crashes and sanitizer reports it checks
 * the contract the TLS listener relies on: a verdict is one of the documented codes, an accepted
 * header lies within the input and the size cap, and every prefix of the input either needs more
 * bytes or already has the final verdict. Each parse reads a heap copy of exactly its bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "acmedge/proxy_protocol.h"

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse_copy(const uint8_t *data, size_t n, ae_pp_header *h) {
  uint8_t *copy = malloc(n ? n : 1);
  if (!copy)
    abort();
  if (n)
    memcpy(copy, data, n);
  int r = ae_pp_parse(copy, n, h);
  free(copy);
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4 * AE_PP_MAX_LEN)
    return 0;
  ae_pp_header h;
  int r = parse_copy(data, size, &h);
  CHECK(r == AE_PP_OK || r == AE_PP_NEED_MORE || r == AE_PP_INVALID || r == AE_PP_TOO_BIG);
  if (r == AE_PP_OK) {
    CHECK(h.header_len >= AE_PP_FIXED_LEN && h.header_len <= size && h.header_len <= AE_PP_MAX_LEN);
    CHECK(!(h.local && h.has_addr));
    if (h.has_addr)
      CHECK(h.src.ss_family == AF_INET || h.src.ss_family == AF_INET6);
    ae_pp_header h2;
    CHECK(parse_copy(data, h.header_len, &h2) == AE_PP_OK && h2.header_len == h.header_len);
  }
  size_t limit = size < 512 ? size : 512;
  for (size_t n = 0; n < limit; n++) {
    ae_pp_header hp;
    int rp = parse_copy(data, n, &hp);
    CHECK(rp == AE_PP_NEED_MORE || rp == r);
  }
  return 0;
}
