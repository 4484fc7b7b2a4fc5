/* libFuzzer target for the ClientHello parser. Besides crashes and sanitizer reports it checks the
 * contract the TLS front end relies on: results are well-formed, and feeding the same bytes in
 * pieces never changes the verdict (a prefix either needs more bytes or already has the final
 * answer). Every prefix is parsed from a heap copy of exactly that many bytes, so ASan sees any
 * read past len. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/clienthello.h"

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

/* Above this size only a sample of prefixes is checked, to keep executions fast. */
#define ALL_PREFIXES_UP_TO 1024
#define SAMPLED_PREFIXES 96

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse_copy(const uint8_t *data, size_t n, ae_clienthello *ch) {
  uint8_t *copy = malloc(n ? n : 1);
  if (!copy)
    abort();
  if (n)
    memcpy(copy, data, n);
  int rc = ae_clienthello_parse(copy, n, ch);
  free(copy);
  return rc;
}

static void check_result(int rc, const ae_clienthello *ch, size_t size) {
  CHECK(rc == AE_CH_OK || rc == AE_CH_NEED_MORE || rc == AE_CH_INVALID || rc == AE_CH_TOO_BIG);
  if (rc == AE_CH_INVALID || rc == AE_CH_TOO_BIG)
    CHECK(ch->alert != 0 && ch->reason != NULL && strcmp(ae_tls_alert_name(ch->alert), "alert") != 0);
  if (rc == AE_CH_NEED_MORE)
    CHECK(ch->need > size && ch->need <= AE_CH_MAX_BYTES);
  if (rc != AE_CH_OK)
    return;
  CHECK(ch->consumed > 0 && ch->consumed <= size && ch->consumed <= AE_CH_MAX_BYTES);
  CHECK((ch->legacy_version >> 8) >= 3);
  size_t sl = strnlen(ch->sni, sizeof(ch->sni));
  CHECK(sl < sizeof(ch->sni));
  CHECK(sl <= 253);
  if (ch->sni_invalid) {
    /* A refused host_name made of LDH bytes: the hello goes on with a printable rendition for the
     * denial event and no DNS name to look up. */
    CHECK(!ch->has_sni && sl > 0);
    for (size_t i = 0; i < sl; i++)
      CHECK(ch->sni[i] > 0x20 && ch->sni[i] < 0x7f);
    return;
  }
  CHECK(ch->has_sni == (sl > 0));
  for (size_t i = 0; i < sl; i++) {
    char c = ch->sni[i];
    CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.');
  }
  if (sl > 0)
    CHECK(ch->sni[0] != '.' && ch->sni[sl - 1] != '.' && strstr(ch->sni, "..") == NULL);
  CHECK(ch->nalpn >= 0 && ch->nalpn <= AE_CH_MAX_ALPN);
  for (int i = 0; i < ch->nalpn; i++) {
    size_t al = strnlen(ch->alpn[i], sizeof(ch->alpn[i]));
    CHECK(al > 0 && al < sizeof(ch->alpn[i]));
    CHECK(ae_clienthello_has_alpn(ch, ch->alpn[i]));
  }
}

static void check_prefix(const uint8_t *data, size_t k, int rc, const ae_clienthello *full) {
  static ae_clienthello part;
  int prc = parse_copy(data, k, &part);
  check_result(prc, &part, k);
  /* More bytes never turn a verdict around, nor change the alert; need is a true lower bound. */
  if (prc != AE_CH_NEED_MORE)
    CHECK(prc == rc);
  if (prc == AE_CH_NEED_MORE)
    CHECK(part.need > k);
  if (prc == AE_CH_INVALID || prc == AE_CH_TOO_BIG)
    CHECK(part.alert == full->alert && part.reason != NULL);
  if (prc == AE_CH_OK) {
    CHECK(part.consumed == full->consumed);
    CHECK(strcmp(part.sni, full->sni) == 0);
  }
  if (rc == AE_CH_NEED_MORE)
    CHECK(prc == AE_CH_NEED_MORE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ae_clienthello full, part;
  int rc = ae_clienthello_parse(data, size, &full);
  check_result(rc, &full, size);

  if (rc == AE_CH_OK) {
    /* The hello lies within consumed: parsing just those bytes gives the same answer. */
    int again = parse_copy(data, full.consumed, &part);
    CHECK(again == AE_CH_OK);
    CHECK(part.consumed == full.consumed);
    CHECK(strcmp(part.sni, full.sni) == 0);
    CHECK(part.nalpn == full.nalpn);
  }

  /* Prefixes: all of them for small inputs, a sample plus the longest one for large ones. */
  size_t step = size <= ALL_PREFIXES_UP_TO ? 1 : size / SAMPLED_PREFIXES + 1;
  for (size_t k = 0; k < size; k += step)
    check_prefix(data, k, rc, &full);
  if (size > 0 && (size - 1) % step != 0)
    check_prefix(data, size - 1, rc, &full);
  return 0;
}
