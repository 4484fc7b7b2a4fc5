/* The upstream HTTP/1.1 response parser shared by both client protocols (upstream_response.h). */
#include "upstream_response.h"

#include "acmedge/common.h"
#include "proxy_client.h"

static int ur_begin(llhttp_t *p) {
  ae_uresp *r = p->data;
  ae_hmsg_reset(&r->head);
  r->trailers = 0;
  return 0;
}

static int ur_status(llhttp_t *p, const char *at, size_t n) {
  ae_uresp *r = p->data;
  ae_hmsg_on_url(&r->head, at, n);
  return 0;
}

static int ur_field(llhttp_t *p, const char *at, size_t n) {
  ae_uresp *r = p->data;
  if (!r->trailers)
    ae_hmsg_on_field(&r->head, at, n);
  else if (r->keep_trailers)
    ae_hmsg_on_field(&r->trail, at, n);
  return 0;
}

static int ur_value(llhttp_t *p, const char *at, size_t n) {
  ae_uresp *r = p->data;
  if (!r->trailers)
    ae_hmsg_on_value(&r->head, at, n);
  else if (r->keep_trailers)
    ae_hmsg_on_value(&r->trail, at, n);
  return 0;
}

static int ur_headers_complete(llhttp_t *p) {
  ae_uresp *r = p->data;
  if (p->status_code < 200 && p->status_code != 101)
    r->interim = 1;
  return r->ops->on_head(r->ud, p);
}

static int ur_body(llhttp_t *p, const char *at, size_t n) {
  ae_uresp *r = p->data;
  r->ops->on_body(r->ud, at, n);
  return 0;
}

static int ur_chunk_header(llhttp_t *p) {
  ae_uresp *r = p->data;
  if (p->content_length == 0) {
    r->trailers = 1;
    if (r->keep_trailers)
      ae_hmsg_reset(&r->trail);
  } else if (r->ops->on_chunk_size) {
    r->ops->on_chunk_size(r->ud, p->content_length);
  }
  return 0;
}

static int ur_chunk_complete(llhttp_t *p) {
  ae_uresp *r = p->data;
  if (!r->trailers && r->ops->on_chunk_end)
    r->ops->on_chunk_end(r->ud);
  return 0;
}

static int ur_message_complete(llhttp_t *p) {
  ae_uresp *r = p->data;
  /* Pausing hands control back to ae_uresp_feed: after a 1xx to restart the head scanner, after
   * the final response so that bytes behind it are not parsed. */
  if (r->interim)
    return HPE_PAUSED;
  r->done = 1;
  r->ops->on_complete(r->ud, llhttp_should_keep_alive(p));
  return HPE_PAUSED;
}

static const llhttp_settings_t ur_settings = {
    .on_message_begin = ur_begin,
    .on_status = ur_status,
    .on_header_field = ur_field,
    .on_header_value = ur_value,
    .on_headers_complete = ur_headers_complete,
    .on_body = ur_body,
    .on_message_complete = ur_message_complete,
    .on_chunk_header = ur_chunk_header,
    .on_chunk_complete = ur_chunk_complete,
};

void ae_uresp_init(ae_uresp *r, const ae_config *cfg, int keep_trailers, const ae_uresp_ops *ops, void *ud) {
  unsigned maxb = ae_px_ms(cfg->proxy.max_header_bytes, AE_PX_DEF_MAX_HEADER_BYTES);
  unsigned maxh = ae_px_ms(cfg->proxy.max_headers, AE_PX_DEF_MAX_HEADERS);
  if (maxb < AE_PX_RESP_HEAD_MIN)
    maxb = AE_PX_RESP_HEAD_MIN;
  if (maxh < 200)
    maxh = 200;
  llhttp_init(&r->p, HTTP_RESPONSE, &ur_settings);
  r->p.data = r;
  ae_hscan_reset(&r->scan, maxb, maxh);
  r->scan_on = 1;
  r->interim = r->trailers = r->done = 0;
  r->keep_trailers = keep_trailers;
  r->ops = ops;
  r->ud = ud;
  ae_hmsg_reset(&r->head);
  ae_hmsg_reset(&r->trail);
}

int ae_uresp_feed(ae_uresp *r, const char *data, size_t n, size_t *used, const char **why) {
  size_t off = 0;
  *used = 0;
  while (off < n && !r->done) {
    size_t left = n - off;
    if (r->scan_on) {
      size_t hused = 0;
      int s = ae_hscan_feed(&r->scan, data + off, left, &hused);
      if (s < 0) {
        *why = s == AE_HS_BAD ? r->scan.why : "response head too large";
        return AE_UR_BAD;
      }
      if (s == AE_HS_DONE)
        r->scan_on = 0;
    }
    llhttp_errno_t e = llhttp_execute(&r->p, data + off, left);
    if (e == HPE_OK) {
      off = n;
      break;
    }
    if (e == HPE_PAUSED) {
      off += (size_t)(llhttp_get_error_pos(&r->p) - (data + off));
      llhttp_resume(&r->p);
      if (r->interim) {
        r->interim = 0;
        ae_hscan_reset(&r->scan, r->scan.max_bytes, r->scan.max_fields);
        r->scan_on = 1;
      }
      continue;
    }
    const char *reason = llhttp_get_error_reason(&r->p);
    *why = reason ? reason : llhttp_errno_name(e);
    return AE_UR_BAD;
  }
  *used = off;
  return r->done ? AE_UR_DONE : AE_UR_MORE;
}

int ae_uresp_eof(ae_uresp *r) {
  llhttp_finish(&r->p);
  return r->done;
}

void ae_uresp_free(ae_uresp *r) {
  ae_hmsg_free(&r->head);
  ae_hmsg_free(&r->trail);
}
