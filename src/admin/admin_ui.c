/* GET /ui: the web console. The page and its script are public (they hold no data, and a
 * browser cannot attach the bearer token to a navigation); every request the console makes for
 * data goes through the admin API with the token the user typed, under the same checks as any
 * other client. */
#include "admin_internal.h"
#include "admin_ui.h"

#include <string.h>
#include <strings.h>

/* Only our own files may run in the page; nothing may frame it (clickjacking on the actions). */
#define UI_HEADERS                                                                                 \
  "Cache-Control: no-cache\r\n"                                                                    \
  "X-Content-Type-Options: nosniff\r\n"                                                            \
  "X-Frame-Options: DENY\r\n"                                                                      \
  "Referrer-Policy: no-referrer\r\n"                                                               \
  "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "            \
  "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "           \
  "form-action 'self'\r\n"

const ae_ui_asset *ae_ui_find(const char *path) {
  const char *name = NULL;
  if (strcmp(path, "/ui") == 0 || strcmp(path, "/ui/") == 0)
    name = "index.html";
  else if (strncmp(path, "/ui/", 4) == 0)
    name = path + 4;
  if (!name)
    return NULL;
  for (const ae_ui_asset *a = ae_ui_assets; a->name; a++)
    if (strcmp(a->name, name) == 0)
      return a;
  return NULL;
}

int ae_ui_same_origin(const char *origin, const char *host) {
  if (!origin || !host || !*host)
    return 0;
  const char *rest = NULL;
  if (strncasecmp(origin, "http://", 7) == 0)
    rest = origin + 7;
  else if (strncasecmp(origin, "https://", 8) == 0)
    rest = origin + 8;
  return rest && strcasecmp(rest, host) == 0;
}

/* Answers GET /ui[/file] (called before authentication: see the file comment). */
void ae_adm_ui_serve(adm_conn *c, int method, const char *path) {
  if (method != HTTP_GET) {
    ae_adm_respond_error(c, 405, "Allow: GET\r\n", "method not allowed");
    return;
  }
  const ae_ui_asset *a = ae_ui_find(path);
  if (!a) {
    ae_adm_respond_error(c, 404, NULL, "no such file: %s", path);
    return;
  }
  ae_adm_respond(c, 200, a->content_type, (const char *)a->data, a->len, UI_HEADERS);
}
