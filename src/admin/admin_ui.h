/* The web console's files, embedded at build time (cmake/EmbedUi.cmake generates the table). */
#ifndef ACMEDGE_ADMIN_UI_H
#define ACMEDGE_ADMIN_UI_H

#include <stddef.h>

typedef struct {
  const char *name;          /* file name under ui/, e.g. "app.js"; NULL ends the table */
  const char *content_type;
  const unsigned char *data; /* static, NUL-terminated for convenience */
  size_t len;
} ae_ui_asset;

/* Every embedded file, ending with a zeroed entry. */
extern const ae_ui_asset ae_ui_assets[];

/* Finds the asset served at path ("/ui", "/ui/" and "/ui/index.html" are the console page);
 * NULL when there is none. The result is static. */
const ae_ui_asset *ae_ui_find(const char *path);

/* 1 when origin (an Origin header) names the same site as host (the Host header) over http or
 * https: such a request comes from the console itself, not from a cross-site page. */
int ae_ui_same_origin(const char *origin, const char *host);

#endif
