/* Private state shared by the ACME client's translation units: acme.c (client, jobs, request
 * layer, problem documents), acme_account.c (directory + account) and acme_order.c (order,
 * authorizations, challenges, finalize, download). */
#ifndef ACMEDGE_ACME_INTERNAL_H
#define ACMEDGE_ACME_INTERNAL_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "acmedge/acme.h"
#include "acmedge/crypto.h"
#include "acmedge/httpc.h"

#define ACME_SUB "acme"
#define ACME_NONCE_POOL 32
#define ACME_MAX_BODY (1024u * 1024u)
#define ACME_HTTP_TIMEOUT_MS 15000u
/* Bounds of a problem's detail and of its formatted subproblems (text from the CA is capped). */
#define ACME_DETAIL_MAX 1024
#define ACME_SUBPROBLEMS_MAX 2048
#define ACME_BADNONCE_TRIES 10
#define ACME_POLL_FIRST_MS 100u
#define ACME_POLL_MAX_MS 3000u
#define ACME_POLL_TOTAL_MS 120000u
#define ACME_RETRY_AFTER_CAP_MS 10000u
#define ACME_MAX_AUTHZ 100

typedef void (*acme_step_fn)(ae_acme_job *job);
typedef void (*acme_resp_fn)(ae_acme_job *job, const ae_http_response *resp);

struct ae_acme {
  uv_loop_t *loop;
  ae_config *cfg;          /* own reference */
  ae_storage *storage;     /* borrowed */
  ae_challenge *ch;        /* borrowed */
  ae_httpc *http;
  int http01_ok, tlsalpn01_ok;
  char ca_host[256];
  char key_path[512];      /* storage key of account.key */
  char json_path[512];     /* storage key of account.json */

  /* Directory, fetched once and cached for the client's life. */
  int have_dir;
  char *url_new_nonce, *url_new_account, *url_new_order;
  char *url_renewal_info;  /* RFC 9773; NULL when the CA offers no ARI */
  char *url_revoke_cert;   /* RFC 8555 7.6; NULL when the directory has none */
  int eab_required;

  /* Nonces from any response, newest last. */
  char *nonces[ACME_NONCE_POOL];
  size_t nnonces;

  /* Account: the key is loaded (or generated and persisted) once; the URL (kid) comes from
   * account.json or newAccount and is forgotten when the CA no longer knows it. */
  int account_loaded;
  ae_key *account_key;
  char *account_url;
  /* The job currently fetching the directory / registering; others wait (waiting_prereq). */
  ae_acme_job *prereq_leader;

  ae_acme_job *jobs;       /* live jobs (not ended), doubly linked; ARI queries included */
  unsigned njobs;          /* issuance jobs among them */
  unsigned nari;           /* renewalInfo queries among them */
  unsigned nzombies;       /* ended jobs whose handles are still closing */
  int closing, http_closed;
  void (*close_cb)(void *ud);
  void *close_ud;
};

struct ae_acme_job {
  ae_acme *a;
  ae_acme_job *prev, *next;
  char *domain;
  ae_acme_callbacks cb;
  int ended;               /* on_done ran or the job was cancelled */
  uv_timer_t timer;        /* delays, polling, deferral of the first step */
  int timer_closed;
  acme_step_fn timer_fn;
  uv_work_t work;          /* certificate key generation off the loop */
  int work_busy;
  ae_httpc_req *req;       /* the one request in flight, if any */

  /* The request being sent (kept to resend after badNonce or account re-registration). */
  struct {
    char *url;
    char *payload;         /* NULL: POST-as-GET */
    int use_jwk;           /* newAccount: embed the JWK instead of kid */
    int nonce_tries;
    char *kid;             /* the account URL used to sign */
    acme_resp_fn fn;
  } op;

  /* A request put aside while the account is registered again (accountDoesNotExist). */
  struct {
    char *url;
    char *payload;
    acme_resp_fn fn;
  } saved;

  /* A renewalInfo query (acme_ari.c) rather than an issuance: it needs only the directory, and
   * its on_done is a trampoline to ari_cb. The job is the first member of ae_acme_ari_req. */
  int ari;
  ae_acme_ari_cb ari_cb;
  void *ari_ud;
  struct ae_acme_renewal_info ari_info;

  /* RFC 9773 "replaces" for a renewal order: the certID, whether newOrder carried it, and
   * whether it was dropped after the CA rejected it. */
  char *replaces;
  int replaces_sent, replaces_dropped;

  /* Prerequisites (directory, account). */
  int waiting_prereq, in_prereq, account_recovered;
  acme_step_fn after_prereq;

  /* Order state. */
  char *order_url, *finalize_url, *cert_url;
  char **authz;
  size_t nauthz, iauthz;
  char *chall_url;         /* challenge being validated for authz[iauthz] */
  const char *chall_type;  /* static string */
  const char *used_type;   /* last challenge type validated (result) */
  char *http_token;        /* published http-01 token */
  int alpn_published;
  /* Shared storage: the answer being written for every instance before the CA is asked. */
  char share_keyauth[512];
  char share_token[136];   /* copies: the job's own strings may go while the write runs */
  int share_alpn, share_rc, chall_processing;
  int account_adopted;     /* the account key was created by another instance meanwhile */
  /* Account key read off the loop (acme_account.c): the outcome until the loop applies it. */
  ae_key *acct_key;
  char *acct_url;
  int acct_generated, acct_fatal, acct_internal;
  ae_err share_err;
  uint64_t poll_deadline;
  unsigned poll_delay_ms;
  int finalized, finalize_tries;
  ae_key *cert_key;
  char *revoke_payload;    /* revokeCert body (acme_revoke.c) */
  ae_err work_err;
  int work_rc;

  /* Order resume (acme_resume.c): the issuance lock's token, the CSR saved with the order, the
   * order being saved while the save runs, and a saved order to continue instead of ordering. */
  uint64_t fence;
  char *csr;
  json_t *saving_order;
  ae_storage_order save_rec;
  ae_storage_order *resume;
};

/* acme.c */
void acme_job_later(ae_acme_job *job, unsigned delay_ms, acme_step_fn fn);
void acme_job_fail(ae_acme_job *job, int code, const char *problem, const char *detail, int retryable,
                   int64_t retry_after);
/* Ends the job from a CA response that is not what the step expected (transport error,
 * problem document, unexpected status); what names the step for the detail. */
void acme_job_fail_resp(ae_acme_job *job, const ae_http_response *resp, const char *what);
void acme_job_succeed(ae_acme_job *job, const char *cert_pem, const char *key_pem);
/* Ends the job with res (on_done called unless already ended). */
void acme_job_finish(ae_acme_job *job, const ae_acme_result *res);
/* Creates a job on the client's list (timer ready, nothing scheduled); NULL + err on failure. */
ae_acme_job *acme_job_new(ae_acme *a, const char *label, size_t size, int ari, ae_err *err);
/* Absolute UNIX time from the response's Retry-After header, 0 when absent or invalid. */
int64_t acme_retry_after_abs(const ae_http_response *resp);
void acme_job_unpublish(ae_acme_job *job);
/* The key generation work of an ended job finished: releases the job if nothing else holds it. */
void acme_job_work_done(ae_acme_job *job);
/* Signed POST (payload NULL = POST-as-GET) with nonce handling and badNonce retry. */
void acme_post(ae_acme_job *job, const char *url, const char *payload, int use_jwk, acme_resp_fn fn);
/* Unsigned GET (directory). */
void acme_get(ae_acme_job *job, const char *url, acme_resp_fn fn);
/* Parses a successful JSON response body; on failure ends the job and returns NULL. */
json_t *acme_resp_json(ae_acme_job *job, const ae_http_response *resp, const char *what);
/* 1 when the problem type URN is urn:ietf:params:acme:error:<name> (or the bare name). */
int acme_problem_is(const char *type, const char *name);
/* Schedules fn after the next poll delay; ends the job when the poll deadline passed. */
void acme_poll_later(ae_acme_job *job, const ae_http_response *resp, acme_step_fn fn, const char *what);

/* acme_account.c */
/* Runs after(job) once the directory is known and the account is registered (at once when
 * they already are; otherwise after this job or the current leader fetched them). An ARI job
 * needs only the directory. */
void acme_job_prereq(ae_acme_job *job, acme_step_fn after);
/* A leader job ended before the prerequisites were ready: hands the work to a waiter, or fails
 * the waiters with res when res is not NULL. */
void acme_prereq_abandon(ae_acme *a, ae_acme_job *leader, const ae_acme_result *res);

/* acme_order.c */
void acme_order_start(ae_acme_job *job);
/* Acts on an order object's status (pending, ready, processing, valid, invalid); resp may be
 * NULL (no Retry-After). */
void acme_order_dispatch(ae_acme_job *job, json_t *order, const ae_http_response *resp);
/* Places a new order (newOrder). */
void acme_order_new(ae_acme_job *job);

/* acme_resume.c */
/* 1 when the order just created must be saved for a takeover first (a lock fence and a backend
 * that saves orders). */
int acme_order_saving(const ae_acme_job *job);
/* Generates the certificate key and CSR and saves the order off the loop, then dispatches order
 * (a reference is taken). */
void acme_order_save(ae_acme_job *job, json_t *order);
/* Reads the saved order job->resume at the CA and continues it, or places a new order. */
void acme_resume_fetch(ae_acme_job *job);
/* Frees the job's resume state. */
void acme_resume_free(ae_acme_job *job);

/* acme_ari.c: struct ae_acme_ari_req wraps the job (first member, so the job's address is the
 * request's and job_free releases both). */
#define ACME_CERT_ID_MAX 320
struct ae_acme_ari_req {
  ae_acme_job job;
  char cert_id[ACME_CERT_ID_MAX];
};

#endif
