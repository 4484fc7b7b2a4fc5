/* Registrable domain of a host name (public suffix + one label) from libpsl's list, used to keep
 * one domain's flood from holding the whole order queue. */
#include "provision_internal.h"

#include <libpsl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const psl_ctx_t *g_psl;
static pthread_once_t g_psl_once = PTHREAD_ONCE_INIT;

/* The system's list when installed (publicsuffix package), else the one built into libpsl. */
static void psl_load(void) {
  g_psl = psl_latest(NULL);
  if (!g_psl)
    g_psl = psl_builtin();
}

void ae_registrable_domain(const char *name, char *out, size_t len) {
  pthread_once(&g_psl_once, psl_load);
  const char *rd = g_psl ? psl_registrable_domain(g_psl, name) : NULL;
  /* A name that is itself a public suffix has no registrable part: it stands for itself. */
  snprintf(out, len, "%s", rd ? rd : name);
}
