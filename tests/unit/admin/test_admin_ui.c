/* Web console assets (admin_ui.c): path lookup over the embedded table, and the same-origin test
 * that lets the console's own requests through the admin API's Origin guard. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "../../../src/admin/admin_ui.h"

static void test_find(void **state) {
  (void)state;
  const ae_ui_asset *idx = ae_ui_find("/ui");
  assert_non_null(idx);
  assert_string_equal(idx->name, "index.html");
  assert_ptr_equal(ae_ui_find("/ui/"), idx);
  assert_ptr_equal(ae_ui_find("/ui/index.html"), idx);
  assert_non_null(strstr(idx->content_type, "text/html"));
  assert_true(idx->len > 100);
  assert_non_null(strstr((const char *)idx->data, "/ui/app.js"));
  const ae_ui_asset *js = ae_ui_find("/ui/app.js");
  assert_non_null(js);
  assert_non_null(strstr(js->content_type, "javascript"));
  assert_int_equal(strlen((const char *)js->data), js->len);
  assert_non_null(ae_ui_find("/ui/app.css"));
  assert_null(ae_ui_find("/ui/missing.js"));
  assert_null(ae_ui_find("/ui/../admin.c"));
  assert_null(ae_ui_find("/uix"));
  assert_null(ae_ui_find("/v1/domains"));
  assert_null(ae_ui_find("/ui/app.js/"));
}

static void test_same_origin(void **state) {
  (void)state;
  assert_true(ae_ui_same_origin("http://127.0.0.1:2020", "127.0.0.1:2020"));
  assert_true(ae_ui_same_origin("https://Admin.Example:8443", "admin.example:8443"));
  assert_false(ae_ui_same_origin("http://127.0.0.1:2021", "127.0.0.1:2020"));
  assert_false(ae_ui_same_origin("http://evil.example", "127.0.0.1:2020"));
  assert_false(ae_ui_same_origin("null", "127.0.0.1:2020"));
  assert_false(ae_ui_same_origin("http://127.0.0.1:2020", NULL));
  assert_false(ae_ui_same_origin(NULL, "127.0.0.1:2020"));
  assert_false(ae_ui_same_origin("http://", ""));
  assert_false(ae_ui_same_origin("ftp://127.0.0.1:2020", "127.0.0.1:2020"));
  assert_false(ae_ui_same_origin("http://127.0.0.1:2020/", "127.0.0.1:2020"));
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_find), cmocka_unit_test(test_same_origin)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
