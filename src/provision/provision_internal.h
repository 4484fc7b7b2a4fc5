/* Private to the provision_*.c family (provision.c and its siblings in this folder). */
#ifndef ACMEDGE_PROVISION_INTERNAL_H
#define ACMEDGE_PROVISION_INTERNAL_H

#include "acmedge/provision.h"
#include "acmedge/strmap.h"

typedef struct ae_ri_ent ae_ri_ent;
typedef struct ae_plock ae_plock;

typedef enum { DS_CHECKING, DS_QUEUED, DS_ISSUING, DS_INSTALLING, DS_VALID, DS_FAILED } ae_dom_state;

/* One managed name. Freed in its timer's close callback. */
typedef struct ae_dom {
  struct ae_provision *p;
  char name[256];
  ae_dom_state state;
  int has_cert;              /* a certificate for this name is in the store */
  int64_t not_before, not_after;
  char *issuer, *serial;
  char *cert_id;             /* RFC 9773 identifier of the served certificate (ARI, "replaces") */
  ae_acme_ari_req *ari;      /* renewal-information query in flight */
  int64_t ari_poll_at;       /* next ARI poll, 0 = none */
  char *last_error, *last_problem;
  int64_t retry_at;          /* UNIX seconds; 0 = none */
  int64_t renew_at;
  unsigned failures;         /* consecutive, drives backoff */
  uint64_t requested_ms;     /* for the time-to-certificate histogram */
  ae_acme_job *job;
  ae_policy_req *preq;
  uv_timer_t timer;          /* renewal or renewal-retry */
  struct ae_dom *qnext;
  int queued;
  int minting;               /* an internal CA mint holds a job slot */
  uint64_t mint_seq;         /* matches the mint's completion to this record */
  int revoked;               /* the served certificate is revoked: replace it, never renew it */
  char rd[64];               /* registrable domain while queued (fair queue), may be truncated */
  int qrenewal;              /* queued as a renewal: outside max_queue and the shares, never dropped */
  int pinned;                /* asked for through the admin API: never dropped as unasked */
  uint64_t asked_ms;         /* last demand (handshake, port 80, API) while pending */
  struct ae_dom *fprev, *fnext; /* list of failed first issuances (bounded by name_cache_max) */
  int in_failed;
  ae_plock *lk;              /* cluster issuance lock (provision_lock.c), NULL without one */
  int gating;                /* holds a job slot while the shared failure state is read */
  uint64_t gate_seq;         /* matches that read's completion to this record */
} ae_dom;

/* Writes name's registrable domain (public suffix list) into out; the name itself when it has
 * none. Thread-safe. */
void ae_registrable_domain(const char *name, char *out, size_t len);

struct ae_provision {
  ae_provision_deps deps;
  char *ca_host;
  ae_config *cfg;
  ae_strmap doms;            /* name -> ae_dom* */
  struct deny_slot *deny;    /* domain_denied suppression: fixed table of name_cache_max slots */
  size_t ndeny, deny_used;
  ae_dom *qhead, *qtail;     /* FIFO of names waiting for a job slot */
  unsigned qlen;
  unsigned qrenewals;        /* of qlen, queued renewals */
  ae_dom *fhead, *ftail;     /* records whose first issuance failed, oldest first */
  unsigned nfailed;
  char last_rd[64];          /* registrable domain of the last started job (round robin) */
  unsigned active;           /* jobs in flight */
  uv_timer_t rate_timer;
  unsigned installs;         /* persist jobs in the thread pool */
  int closing;
  unsigned closing_handles;
  void (*close_cb)(void *);
  void *close_ud;
  /* Upper bound of the first ARI poll's random delay after a certificate is installed or
   * loaded (seconds; 0 = at once). 300 unless ACMEDGE_ARI_FIRST_POLL_MAX_S says otherwise,
   * which exists so tests need not wait up to five minutes. */
  unsigned ari_first_poll_max_s;
  ae_strmap fb_inflight;     /* names with a stand-in leaf mint running (value unused) */
  unsigned fb_active;        /* stand-in mints running */
  ae_strmap loads;           /* name -> load in flight (singleflight) */
  unsigned bg;               /* loads and scans in the thread pool */
  uint64_t lazy_loads;       /* storage reads started, for metrics */
  ae_ri_ent *ri;             /* renewal index: min-heap on renew-at */
  size_t ri_n, ri_cap;
  uv_timer_t ri_timer;
  int ri_timer_on;
  size_t stored_indexed;     /* names the start-up scan found */
  int index_ready;
};

/* Default spread of the first ARI poll after install or load (seconds; ari_first_poll_max_s). */
#define ARI_FIRST_POLL_MAX_S 300

/* Creates and registers a record for name. */
ae_dom *ae_dom_new(struct ae_provision *p, const char *name);
/* Unregisters and frees a record (asynchronously), cancelling its work. */
void ae_dom_remove(struct ae_provision *p, ae_dom *d);
/* Public state name: pending, valid, failed, renewing. */
const char *ae_dom_state_name(const ae_dom *d);
/* Persists cert+key off the loop, then calls ae_provision_installed on the loop. */
void ae_provision_install(struct ae_provision *p, const char *name, const char *cert_pem, const char *key_pem,
                          const char *challenge_type);
/* Loop-side completion of an install (cert NULL on failure, err says why) or of a load from
 * storage (loaded = 1): swaps the certificate in and emits the events. Takes no reference. */
void ae_provision_installed(struct ae_provision *p, const char *name, ae_cert *cert, const char *cert_id, int loaded,
                            const char *err);
/* Queues d for a job (FIFO, concurrency cap). AE_ELIMIT when the queue is full. */
int ae_provision_admit(struct ae_provision *p, ae_dom *d);
/* Failure path of a replacement for a revoked certificate: stop serving it (provision_revoke.c). */
void ae_provision_revoked_failed(struct ae_provision *p, ae_dom *d);
/* Tells the deps' cert_changed hook that name's certificate changes (provision_revoke.c). */
void ae_provision_cert_changed(struct ae_provision *p, const char *name, ae_cert *new_cert, int loaded);
/* Fires the close callback once nothing is pending. */
void ae_provision_maybe_closed(struct ae_provision *p);
/* Completion of an issuance job (ACME or internal CA): install on success, backoff on failure.
 * Releases the job slot. */
void ae_provision_job_done(void *dom, const ae_acme_result *res);
/* Starts minting d's certificate with the internal CA off the loop (provision_ca.c); the result
 * arrives through ae_provision_job_done. 0, or <0 with err set (nothing started). */
int ae_provision_mint_start(struct ae_provision *p, ae_dom *d, ae_err *err);
/* on_demand.fallback_cert "internal" for an allowed name that is pending or failing: makes sure
 * a stand-in leaf is (or will be) in the cache, one mint per name at a time, and that held
 * handshakes are woken. Returns the action for the handshake (provision_fallback.c). */
ae_miss_action ae_provision_fallback(struct ae_provision *p, const char *name);
/* Returns 1 when name should be read from storage before anything else (not cached, not known
 * absent, no pending record). */
int ae_provision_need_load(struct ae_provision *p, const char *name);
/* Reads name from storage off the loop (joins a read in flight); source says what to do when
 * storage lacks it (sni, http, api, renewal). */
void ae_provision_load_name(struct ae_provision *p, const char *name, const char *source);
/* Marks a read in flight as void (the name was forgotten meanwhile). */
void ae_provision_cancel_load(struct ae_provision *p, const char *name);
/* Continuation of a read that found nothing: the miss proceeds as before lazy loading. */
void ae_provision_not_stored(struct ae_provision *p, const char *name, const char *source);
/* Wakes held handshakes and port-80 requests for name. */
void ae_provision_wake_name(struct ae_provision *p, const char *name);
/* Renewal index (provision_index.c). */
void ae_renew_index_init(struct ae_provision *p);
void ae_renew_index_push(struct ae_provision *p, const char *name, int64_t at);
void ae_renew_index_close(struct ae_provision *p);
/* Drops every entry of name (a deleted name); O(entries). Returns how many were dropped. */
size_t ae_renew_index_remove(struct ae_provision *p, const char *name);
/* 1 when name has an entry; O(entries). */
int ae_renew_index_has(const struct ae_provision *p, const char *name);
/* i-th heap slot (0 = soonest); AE_ENOTFOUND past the end. name is owned by the index. */
int ae_renew_index_peek(const struct ae_provision *p, size_t i, const char **name, int64_t *at);
size_t ae_renew_index_size(const struct ae_provision *p);
/* Fills out (room for max) with the heap slots of the max soonest entries, soonest first. */
size_t ae_renew_index_soonest(const struct ae_provision *p, size_t max, size_t *out);
/* Renew-at for a validity period: two thirds into it. */
int64_t ae_renew_at(int64_t not_before, int64_t not_after);
/* New reference: the admin JSON object of one record (design section 5). */
json_t *ae_dom_json(const ae_dom *d);
/* strmap foreach callback freeing values. */
void ae_free_value_cb(void *ud, const char *key, void *value);
/* Uniform random number in [0, 1) for backoff and ARI jitter (provision.c). */
double ae_provision_rnd01(void);
/* Current UNIX time in seconds (provision.c). */
int64_t ae_provision_now_s(void);
/* 1 while d has a decision, queue slot, job or install in flight (provision.c). */
int ae_dom_busy(const ae_dom *d);
/* Replaces *dst with a copy of v (NULL clears); the record owns the copy (provision.c). */
void ae_dom_set_str(char **dst, const char *v);
/* Wakes held handshakes for name unless a stand-in leaf mint for it is running (provision.c). */
void ae_provision_wake(struct ae_provision *p, const char *name);
/* Takes d out of the job queue if it is queued (provision_queue.c). */
void ae_provision_queue_remove(struct ae_provision *p, ae_dom *d);
/* Starts queued jobs while a slot and a rate token are free (provision_queue.c). */
void ae_provision_pump(struct ae_provision *p);
/* domain_denied for name (at most one event per name per minute) and the denied metric
 * (provision_miss.c). source may be NULL. */
void ae_provision_deny_event(struct ae_provision *p, const char *name, const char *reason, const char *source);
/* A first issuance of d failed: remembers it among at most name_cache_max such records,
 * forgetting the oldest (provision_bounds.c). */
void ae_provision_failed_track(struct ae_provision *p, ae_dom *d);
/* Takes d off that list (provision_bounds.c). */
void ae_provision_failed_untrack(struct ae_provision *p, ae_dom *d);
/* 1 when as many storage reads are in flight as name_cache_max allows: a handshake for a name
 * not in memory then gets the default certificate instead of another read (provision_bounds.c). */
int ae_provision_loads_full(const struct ae_provision *p);
/* 1 when a domain_denied event for name went out less than ms ago (then nothing changes);
 * else remembers now as its last one and returns 0 (provision_bounds.c). */
int ae_provision_deny_suppressed(struct ae_provision *p, const char *name, uint64_t now, uint64_t ms);
/* Forgets every suppression, e.g. after a reload changed the policy (provision_bounds.c). */
void ae_provision_deny_reset(struct ae_provision *p);
/* 1 when d's issuance needs the cluster-wide lock (shared storage, not an internal name). */
int ae_provision_lock_needed(const struct ae_provision *p, const ae_dom *d);
/* Takes d's lock off the loop, then orders (ae_provision_issue_locked), or installs what another
 * instance committed, or keeps waiting for it; d holds a job slot throughout (provision_lock.c). */
void ae_provision_lock_begin(struct ae_provision *p, ae_dom *d);
/* The fencing token to commit d's certificate with (0 without a lock); AE_ECANCELED when the
 * lock is lost or its lease may have lapsed: then nothing may be written. */
int ae_provision_lock_fence(const ae_dom *d, uint64_t *fence);
/* Stops the heartbeat and releases d's lock if held (after the commit or a failure). */
void ae_provision_lock_end(struct ae_provision *p, ae_dom *d);
/* The saved order the lock's acquisition found for d (caller owns: ae_storage_order_clear and
 * free), NULL when none. */
ae_storage_order *ae_provision_lock_take_resume(ae_dom *d);
/* The failed order's saved record goes with the lock's release (fenced delete). */
void ae_provision_lock_drop_order(ae_dom *d);
/* Releases and frees d's lock state when the record goes. */
void ae_provision_lock_detach(struct ae_provision *p, ae_dom *d);
/* Starts d's issuance job once its lock is held (provision_queue.c). */
void ae_provision_issue_locked(struct ae_provision *p, ae_dom *d);
/* Another instance deleted name from the shared storage (a reload found nothing): drops its
 * cached certificate and record unless an order of ours runs for it (provision_cluster.c). */
void ae_provision_storage_deleted(struct ae_provision *p, const char *name);
/* Shared storage: before d's order starts (slot taken, state ISSUING), reads the name's failure
 * state off the loop. Returns 1 when it did: the check continues with ae_provision_job_go, or
 * ends d's attempt as failed until the recorded retry_at. 0: go on now (provision_cluster.c). */
int ae_provision_gate(struct ae_provision *p, ae_dom *d);
/* Starts d's order or mint; the job slot is already taken (provision_queue.c). */
void ae_provision_job_go(struct ae_provision *p, ae_dom *d);
/* Shared storage: records d's failure until retry_at for every instance (provision_cluster.c). */
void ae_provision_fail_share(struct ae_provision *p, ae_dom *d, const ae_acme_result *res, int64_t retry_at);
/* Sets d's renew-at and arms its timer (provision_renewal.c). */
void ae_dom_arm_timer(ae_dom *d, int64_t at);

#endif
