/* Provisioning state as the admin API shows it: the managed-domains list and per-domain metrics.
 * Read-only views of the records kept by provision.c. */
#include "provision_internal.h"

#include <stdio.h>
#include <stdlib.h>

json_t *ae_provision_domains_json(ae_provision *p) {
  json_t *arr = json_array();
  for (size_t i = 0; i < p->doms.cap; i++) {
    ae_dom *d = p->doms.slots[i].key ? p->doms.slots[i].value : NULL;
    if (!d)
      continue;
    json_t *o = json_object();
    json_object_set_new(o, "domain", json_string(d->name));
    json_object_set_new(o, "state", json_string(ae_dom_state_name(d)));
    char buf[40];
    if (d->has_cert) {
      ae_time_rfc3339(d->not_after, buf, sizeof(buf));
      json_object_set_new(o, "not_after", json_string(buf));
    } else {
      json_object_set_new(o, "not_after", json_null());
    }
    json_object_set_new(o, "issuer", d->issuer ? json_string(d->issuer) : json_null());
    json_object_set_new(o, "serial", d->serial ? json_string(d->serial) : json_null());
    json_object_set_new(o, "last_error", d->last_error ? json_string(d->last_error) : json_null());
    json_object_set_new(o, "last_problem", d->last_problem ? json_string(d->last_problem) : json_null());
    if (d->retry_at) {
      ae_time_rfc3339(d->retry_at, buf, sizeof(buf));
      json_object_set_new(o, "retry_at", json_string(buf));
    } else {
      json_object_set_new(o, "retry_at", json_null());
    }
    if (d->has_cert && uv_is_active((uv_handle_t *)&d->timer)) {
      ae_time_rfc3339(d->renew_at, buf, sizeof(buf));
      json_object_set_new(o, "renew_at", json_string(buf));
    }
    json_array_append_new(arr, o);
  }
  return arr;
}

char *ae_provision_metrics(ae_provision *p) {
  size_t cap = 256 + p->doms.count * 128, n = 0;
  char *buf = ae_malloc(cap);
  unsigned counts[3] = {0, 0, 0}; /* pending(+renewing), valid, failed */
  n += (size_t)snprintf(buf + n, cap - n,
                        "# HELP acmedge_certificate_expiration_timestamp_seconds Expiry (UNIX time) of the certificate served for a domain.\n"
                        "# TYPE acmedge_certificate_expiration_timestamp_seconds gauge\n");
  for (size_t i = 0; i < p->doms.cap; i++) {
    ae_dom *d = p->doms.slots[i].key ? p->doms.slots[i].value : NULL;
    if (!d)
      continue;
    if (d->state == DS_VALID)
      counts[1]++;
    else if (d->state == DS_FAILED)
      counts[2]++;
    else
      counts[0]++;
    if (!d->has_cert)
      continue;
    if (cap - n < 400) {
      cap *= 2;
      buf = ae_realloc(buf, cap);
    }
    n += (size_t)snprintf(buf + n, cap - n, "acmedge_certificate_expiration_timestamp_seconds{domain=\"%s\"} %lld\n",
                          d->name, (long long)d->not_after);
  }
  if (cap - n < 400) {
    cap += 400;
    buf = ae_realloc(buf, cap);
  }
  snprintf(buf + n, cap - n,
           "# HELP acmedge_certificates Managed domains by state.\n"
           "# TYPE acmedge_certificates gauge\n"
           "acmedge_certificates{state=\"pending\"} %u\n"
           "acmedge_certificates{state=\"valid\"} %u\n"
           "acmedge_certificates{state=\"failed\"} %u\n",
           counts[0], counts[1], counts[2]);
  return buf;
}
