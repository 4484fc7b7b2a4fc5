# shellcheck shell=bash
# Helpers for bench/ttc.sh: Caddy (on-demand TLS) as the comparison server. Sourced after
# tests/lib/common.sh; uses its $T, ae_bg, ae_free_port, ae_pid_alive, ae_port_open and ae_fail.

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

# caddy_start : starts the ask endpoint and Caddy (binary $CADDY_BIN, default caddy) with a config
# written by caddy_config_write; waits (<= 10 s) until Caddy's https port accepts. HOME and the XDG
# dirs point into $T so nothing outside it is written.
caddy_start() {
  local ask_port i
  ask_port=$(ae_free_port)
  ae_bg ask "$AE_PY" "$BENCH_DIR/tools/ask_server.py" "$ask_port"
  ae_wait_for ae_port_open "$ask_port" || ae_fail "ask server did not start"
  caddy_config_write "$T/caddy.json" "$ask_port"
  mkdir -p "$T/caddy-home"
  ae_bg caddy env HOME="$T/caddy-home" XDG_DATA_HOME="$T/caddy-home/data" \
    XDG_CONFIG_HOME="$T/caddy-home/config" "${CADDY_BIN:-caddy}" run --config "$T/caddy.json"
  CADDY_PID=$(cat "$T/caddy.pid")
  for ((i = 0; i < 100; i++)); do
    if ae_port_open "$AE_HTTPS_PORT"; then
      return 0
    fi
    ae_pid_alive "$CADDY_PID" || ae_fail "caddy exited during start-up"
    sleep 0.1
  done
  ae_fail "caddy did not listen on 127.0.0.1:$AE_HTTPS_PORT within 10 s"
}
