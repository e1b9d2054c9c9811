#!/usr/bin/env bash
# The interop suite's one entry point: xoauth2-proxy against real mail
# software (Postfix, Dovecot, swaks, Python smtplib, smtp-source) and a real
# OAuth2 issuer built on ory/fosite, all private instances on loopback.
#
#   test/interop/run.sh            # as root, on Debian 12; 1-2 minutes, more the first time
#
# It installs the Debian packages it lacks, builds the proxy and the issuer,
# makes a private CA, starts the peers, runs the Go tests behind the
# "interop" build tag, and stops everything it started by PID on exit. On a
# failure it prints the peers' logs. docs/TESTING.md explains the scenarios.
#
# Environment:
#   INTEROP_DIR=DIR         work directory, kept (default: a new one under /tmp,
#                           removed after a passing run)
#   INTEROP_KEEP=1          keep the work directory after a passing run
#   INTEROP_RUN=REGEXP      run only the matching tests (go test -run)
#   INTEROP_VOLUME=N        messages of scenario 3 (default 5000)
#   INTEROP_ACCESS_TTL=D    the issuer's access-token lifetime (default 4s)
#   INTEROP_PROXY_BIN=FILE  test this proxy binary instead of building ./cmd/xoauth2-proxy
#   INTEROP_KNOWN_BUGS=1    run the tests of known, reported proxy bugs
#   INTEROP_HOLD=1          start the peers, write $INTEROP_DIR/env.sh, and wait
#                           (Ctrl-C stops everything): for running single tests by
#                           hand with `. DIR/env.sh; go test -tags interop -run X ./test/interop/`
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
start_time=$(date +%s)

if [ "$(id -u)" -ne 0 ]; then
  echo "interop: must run as root (apt-get, postfix -c, dovecot -c)"; exit 1
fi

if [ -n "${INTEROP_DIR:-}" ]; then
  WORK=$INTEROP_DIR INTEROP_KEEP=1 # never delete a directory we were given
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/xoauth2-interop.XXXXXX)
fi
chmod 755 "$WORK" # Postfix and Dovecot run parts of themselves as other users
PIDS_DIR="$WORK/pids"
mkdir -p "$PIDS_DIR" "$WORK/bin"
. "$ROOT/test/interop/peers.sh"

status=1
finish() {
  local rc=$?
  if [ "$status" -ne 0 ] && [ "$rc" -eq 0 ]; then rc=1; fi
  set +e
  if [ -n "${hold_sleep:-}" ]; then kill "$hold_sleep" 2>/dev/null; fi
  stop_all
  if [ "$status" -ne 0 ]; then
    echo "interop: FAILED; peer logs follow (work directory kept: $WORK)"
    dump_logs
  elif [ "${INTEROP_KEEP:-}" = 1 ]; then
    echo "interop: work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  echo "interop: $(( $(date +%s) - start_time ))s in all"
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

echo "== interop: packages"
install_packages

echo "== interop: build"
if [ -n "${INTEROP_PROXY_BIN:-}" ]; then
  echo "using the given proxy binary $INTEROP_PROXY_BIN"
  cp "$INTEROP_PROXY_BIN" "$WORK/bin/xoauth2-proxy"
else
  go build -mod=readonly -o "$WORK/bin/xoauth2-proxy" ./cmd/xoauth2-proxy
fi
(cd test/interop/issuer && go build -mod=readonly -o "$WORK/bin/issuer" .)

echo "== interop: peers (work directory $WORK)"
read -r ISSUER_PORT UP_STARTTLS_PORT UP_TLS_PORT UP_RELAY_PORT SUB_PORT SUBS_PORT CLIENT_PORT CLIENT_PLAIN_PORT \
  CLIENT_PROXY_PORT IMAPS_PORT < <(free_ports 10)
DOVECOT_INTROSPECT_SECRET=$(openssl rand -hex 16)
CLIENT_SASL_USER=mta@interop.test
CLIENT_SASL_PASS=$(openssl rand -hex 12)
make_tls
start_issuer
start_dovecot
start_upstream_postfix
start_client_postfix
echo "issuer :$ISSUER_PORT  upstream postfix STARTTLS :$UP_STARTTLS_PORT implicit TLS :$UP_TLS_PORT" \
  "dovecot submission STARTTLS :$SUB_PORT implicit TLS :$SUBS_PORT" \
  "client postfix :$CLIENT_PORT (STARTTLS) :$CLIENT_PLAIN_PORT (plain) -> proxy :$CLIENT_PROXY_PORT"

export INTEROP_DIR="$WORK"
export INTEROP_PROXY_BIN="$WORK/bin/xoauth2-proxy"
export INTEROP_ISSUER_URL="http://127.0.0.1:$ISSUER_PORT"
export INTEROP_CA_FILE="$WORK/tls/ca.pem"
export INTEROP_PROXY_CERT="$WORK/tls/proxy.pem"
export INTEROP_PROXY_KEY="$WORK/tls/proxy.key"
export INTEROP_UPSTREAM_STARTTLS="127.0.0.1:$UP_STARTTLS_PORT"
export INTEROP_UPSTREAM_TLS="127.0.0.1:$UP_TLS_PORT"
export INTEROP_SUBMISSION_STARTTLS="127.0.0.1:$SUB_PORT"
export INTEROP_SUBMISSION_TLS="127.0.0.1:$SUBS_PORT"
export INTEROP_CLIENT_SMTP="127.0.0.1:$CLIENT_PORT"
export INTEROP_CLIENT_SMTP_PLAIN="127.0.0.1:$CLIENT_PLAIN_PORT"
export INTEROP_CLIENT_PROXY_PORT="$CLIENT_PROXY_PORT"
export INTEROP_CLIENT_SASL_USER="$CLIENT_SASL_USER"
export INTEROP_CLIENT_SASL_PASS="$CLIENT_SASL_PASS"
export INTEROP_IMAPS="127.0.0.1:$IMAPS_PORT"            # Dovecot IMAP, implicit TLS (issue 15)
export INTEROP_DOVECOT_HOME="$WORK/dovecot/home"        # its mailboxes: <email>/Maildir
env | grep '^INTEROP_' | grep -v '^INTEROP_HOLD=' | sed "s/^/export /; s/=\(.*\)/='\1'/" >"$WORK/env.sh"

if [ "${INTEROP_HOLD:-}" = 1 ]; then
  echo "interop: peers running; environment in $WORK/env.sh; Ctrl-C stops them"
  status=0 INTEROP_KEEP=1
  while :; do sleep 3600 & hold_sleep=$!; wait $hold_sleep; done
fi

echo "== interop: scenarios (go test -tags interop ./test/interop/...)"
log="$WORK/go-test.log"
set +e
go test -mod=readonly -tags interop -count=1 -v -timeout 15m \
  ${INTEROP_RUN:+-run "$INTEROP_RUN"} ./test/interop/... 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
passed=$(grep -cE '^\s*--- PASS' "$log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$log" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$log" || true)
echo "== interop: results"
grep -E 'SCENARIO|^\s*--- (FAIL|SKIP)' "$log" || true
if [ "$rc" -ne 0 ]; then
  echo "interop: go test failed (exit $rc)"; exit "$rc"
fi
if ! grep -q '^ok ' "$log"; then
  echo "interop: no test ran"; exit 1
fi
# Only known proxy bugs and tests waiting for an unbuilt feature may skip;
# any other skip means a peer was missing, which CI must not take for a pass.
allowed=$(grep -cE 'KNOWN PROXY BUG \(skipped|needs issue [0-9]+ ' "$log" || true)
if [ "$skipped" -gt "$allowed" ]; then
  echo "interop: $skipped tests skipped, only $allowed of them for a known bug or an unbuilt feature"; exit 1
fi
if grep -q 'KNOWN PROXY BUG' "$log"; then
  echo "!!!!!!!! interop: KNOWN PROXY BUGS, excluded from this run (INTEROP_KNOWN_BUGS=1 runs them):"
  grep -oE 'KNOWN PROXY BUG.*' "$log" | sort -u | sed 's/^/!!!!!!!! /'
fi
status=0
echo "interop: $passed passed, $failed failed, $skipped skipped"
