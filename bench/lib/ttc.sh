# shellcheck shell=bash
# Caddy (on-demand TLS) as the comparison server of bench/ttc.sh and bench/abuse.sh. Sourced after
# bench/lib/common.sh; uses $T, ae_bg, ae_free_port, ae_port_open, ae_fail, caddy_run and
# bench_wait_port.

# caddy_config_write FILE ASK_PORT : Caddy JSON config with on-demand TLS for any SNI, issuing from
# the Pebble started by pebble_start ($PEBBLE_DIR, trusting $PEBBLE_CA), listening on loopback at
# $AE_HTTPS_PORT (and solving http-01 on $AE_HTTP_PORT). No admin endpoint, no OCSP fetches, no
# trust-store changes, storage under $T.
caddy_config_write() {
  local file=$1 ask_port=$2
  cat >"$file" <<EOF
{
  "admin": { "disabled": true },
  "logging": { "logs": { "default": { "level": "INFO" } } },
  "storage": { "module": "file_system", "root": "$T/caddy-storage" },
  "apps": {
    "http": {
      "http_port": $AE_HTTP_PORT,
      "https_port": $AE_HTTPS_PORT,
      "servers": {
        "srv0": {
          "listen": ["127.0.0.1:$AE_HTTPS_PORT"],
          "routes": [ { "handle": [ { "handler": "static_response", "body": "ok" } ] } ],
          "tls_connection_policies": [ {} ]
        }
      }
    },
    "pki": { "certificate_authorities": { "local": { "install_trust": false } } },
    "tls": {
      "automation": {
        "policies": [
          {
            "issuers": [
              {
                "module": "acme",
                "ca": "$PEBBLE_DIR",
                "trusted_roots_pem_files": ["$PEBBLE_CA"],
                "challenges": { "bind_host": "127.0.0.1" }
              }
            ],
            "on_demand": true,
            "disable_ocsp_stapling": true
          }
        ],
        "on_demand": { "ask": "http://127.0.0.1:$ask_port/ok" }
      },
      "disable_ocsp_stapling": true
    }
  }
}
EOF
}

# caddy_start ASK_TOOL [ARG...] : starts the ask endpoint (bench/tools/ASK_TOOL PORT ARG...) and
# Caddy (caddy_run) with a config written by caddy_config_write; waits (<= 10 s) until Caddy's
# https port accepts. Caddy's pid in CADDY_PID.
caddy_start() {
  local tool=$1 ask_port
  shift
  ask_port=$(ae_free_port)
  ae_bg ask "$AE_PY" "$BENCH_DIR/tools/$tool" "$ask_port" "$@"
  ae_wait_for ae_port_open "$ask_port" || ae_fail "ask server did not start"
  caddy_config_write "$T/caddy.json" "$ask_port"
  caddy_run "$T/caddy.json"
  bench_wait_port caddy "$CADDY_PID" "$AE_HTTPS_PORT" 10
}
