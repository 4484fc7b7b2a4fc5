/* The resume decision: what an instance taking a name over does with the saved order, from the
 * CA's answer to its POST-as-GET. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "acmedge/acme.h"

static void test_decide(void **state) {
  (void)state;
  const int64_t now = 1700000000;
  static const struct {
    long http;
    const char *status;
    int64_t expires;
    ae_acme_resume_action want;
  } rows[] = {
      {200, "pending", now + 3600, AE_RESUME_AUTHZ},
      {200, "ready", now + 3600, AE_RESUME_FINALIZE},
      {200, "processing", now + 3600, AE_RESUME_POLL},
      {200, "valid", now + 3600, AE_RESUME_DOWNLOAD},
      {200, "valid", 0, AE_RESUME_DOWNLOAD},      /* no expires: the CA's status decides */
      {200, "invalid", now + 3600, AE_RESUME_NEW},
      {200, "deactivated", now + 3600, AE_RESUME_NEW}, /* not an order status */
      {200, "pending", now - 1, AE_RESUME_NEW},   /* expired */
      {200, "ready", now, AE_RESUME_NEW},
      {200, NULL, now + 3600, AE_RESUME_NEW},     /* unreadable body */
      {404, "pending", now + 3600, AE_RESUME_NEW},
      {403, "pending", now + 3600, AE_RESUME_NEW},
      {500, "ready", now + 3600, AE_RESUME_NEW},
      {-1, NULL, 0, AE_RESUME_NEW},               /* no answer */
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    ae_acme_resume_action got = ae_acme_resume_decide(rows[i].http, rows[i].status, rows[i].expires, now);
    if (got != rows[i].want)
      fail_msg("row %zu (%ld %s): got %s, want %s", i, rows[i].http, rows[i].status ? rows[i].status : "(null)",
               ae_acme_resume_action_name(got), ae_acme_resume_action_name(rows[i].want));
  }
  assert_string_equal(ae_acme_resume_action_name(AE_RESUME_NEW), "new");
  assert_string_equal(ae_acme_resume_action_name(AE_RESUME_DOWNLOAD), "download");
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_decide)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
