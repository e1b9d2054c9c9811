# Functions that configure, start and stop the interop suite's private peers.
# Sourced by run.sh, which sets WORK (the work directory, 0755), the *_PORT
# variables and PIDS_DIR. Every peer gets its own directory under $WORK and
# listens on 127.0.0.1 only; nothing touches the system's instances.
# docs/TESTING.md describes the topology.

# The Debian packages the suite needs (../../../shared/INTEROP.md: Packages).
INTEROP_PACKAGES="postfix dovecot-core dovecot-submissiond dovecot-imapd swaks libsasl2-modules \
libio-socket-ssl-perl libnet-ssleay-perl libauthen-sasl-perl openssl python3"

install_packages() {
  local missing=()
  for p in $INTEROP_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "packages: all present"
    return
  fi
  echo "packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  # policy-rc.d keeps apt from starting the system's postfix and dovecot.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$WORK/apt.log" 2>&1 || {
    cat "$WORK/apt.log"; return 1; }
}

# free_ports N prints N distinct free loopback TCP ports.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# wait_port PORT NAME: wait until something accepts on 127.0.0.1:PORT.
wait_port() {
  local i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 is not listening on 127.0.0.1:$1"; return 1
}

make_tls() {
  local d="$WORK/tls"
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=xoauth2-proxy interop CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$d/ext.cnf"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/ext.cnf" -out "$d/server.pem" 2>/dev/null
  chmod 644 "$d/server.key" # Dovecot and Postfix read it as root; test material only
  # The proxy's listener certificate (STARTTLS and implicit TLS), from the
  # same CA; its key is 0600, as the proxy warns about a readable one.
  openssl req -newkey rsa:2048 -nodes -subj "/CN=xoauth2-proxy interop listener" \
    -keyout "$d/proxy.key" -out "$d/proxy.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$d/proxy-ext.cnf"
  openssl x509 -req -in "$d/proxy.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/proxy-ext.cnf" -out "$d/proxy.pem" 2>/dev/null
  chmod 600 "$d/proxy.key"
}

start_issuer() {
  "$WORK/bin/issuer" -listen "127.0.0.1:$ISSUER_PORT" -access-ttl "${INTEROP_ACCESS_TTL:-4s}" \
    -resource-server-id dovecot -resource-server-secret "$DOVECOT_INTROSPECT_SECRET" \
    >>"$WORK/issuer.log" 2>&1 &
  echo $! >"$PIDS_DIR/issuer.pid"
  wait_port "$ISSUER_PORT" issuer
}

# Dovecot: the SASL server of the upstream Postfix (passdb oauth2, RFC 7662
# introspection against the issuer) and, with its submission service, a
# second upstream that refuses AUTH lines over 1,024 bytes.
start_dovecot() {
  local d="$WORK/dovecot"
  mkdir -p "$d/run" "$d/state" "$d/home"
  chown 65534:65534 "$d/home"
  cat >"$d/oauth2.conf.ext" <<EOF
introspection_mode = post
introspection_url = http://dovecot:$DOVECOT_INTROSPECT_SECRET@127.0.0.1:$ISSUER_PORT/introspect
active_attribute = active
active_value = true
username_attribute = username
timeout_msecs = 5000
EOF
  cat >"$d/dovecot.conf" <<EOF
instance_name = interop-upstream
base_dir = $d/run
state_dir = $d/state
log_path = $WORK/dovecot.log
listen = 127.0.0.1
protocols = submission imap
hostname = submission.upstream.test
ssl = yes
ssl_cert = <$WORK/tls/server.pem
ssl_key = <$WORK/tls/server.key
auth_mechanisms = xoauth2 oauthbearer
auth_failure_delay = 0
auth_verbose = yes
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $d/oauth2.conf.ext
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$d/home/%u
}
# The submission service opens no mailbox, but wants a location to exist.
mail_location = maildir:~/Maildir
submission_relay_host = 127.0.0.1
submission_relay_port = $UP_RELAY_PORT
submission_relay_trusted = yes
submission_relay_ssl = no
service submission-login {
  inet_listener submission {
    address = 127.0.0.1
    port = $SUB_PORT
  }
  inet_listener submissions {
    address = 127.0.0.1
    port = $SUBS_PORT
    ssl = yes
  }
}
# IMAP over implicit TLS with the same oauth2 passdb: the mailboxes the
# bounce collector reads (issue 15; feedback_test.go writes the reports
# into $d/home/<email>/Maildir).
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
EOF
  dovecot -c "$d/dovecot.conf"
  local i
  for i in $(seq 1 100); do
    [ -S "$d/run/auth-postfix" ] && [ -s "$d/run/master.pid" ] && break
    sleep 0.1
  done
  [ -S "$d/run/auth-postfix" ] || { echo "dovecot did not start"; return 1; }
  cp "$d/run/master.pid" "$PIDS_DIR/dovecot.pid"
  wait_port "$SUB_PORT" "dovecot submission"
  wait_port "$IMAPS_PORT" "dovecot imaps"
}

# postfix_master_cf LISTENERS: the standard services (no chroot), then the
# given smtpd listeners.
postfix_master_cf() {
  cat <<'EOF'
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsproxy  unix  -       -       n       -       0       tlsproxy
EOF
  printf '%s\n' "$@"
}

# start_postfix DIR NAME: check and start the instance configured in DIR.
# Its queue and data directories are DIR-spool and DIR-data, outside DIR,
# where postfix check wants only root-owned files.
start_postfix() {
  local d="$1"
  mkdir -p "$d-data" "$d-spool"
  chown postfix "$d-data"
  # start runs postfix check (and creates the queue directories) first.
  postfix -c "$d" start >"$d/start.log" 2>&1 || { echo "postfix start ($2) failed:"; cat "$d/start.log"; return 1; }
  local i
  for i in $(seq 1 100); do
    [ -s "$d-spool/pid/master.pid" ] && break
    sleep 0.1
  done
  tr -d ' ' <"$d-spool/pid/master.pid" >"$PIDS_DIR/postfix-$2.pid"
}

# The upstream: Postfix smtpd with Dovecot SASL, playing smtp.gmail.com.
# Every recipient lands in the one Maildir $WORK/mail/inbox/ (virtual(8)
# allows no $1 in its maps); its Delivered-To header tells them apart.
start_upstream_postfix() {
  local d="$WORK/upstream"
  mkdir -p "$d" "$WORK/mail"
  chown 65534:65534 "$WORK/mail"
  echo '/./ OK' >"$d/any.regexp"
  echo '/./ inbox/' >"$d/mailbox.regexp"
  echo '/^rejectme[@+]/ 550 5.1.1 <rejectme>: Recipient address rejected by the interop upstream' >"$d/reject.regexp"
  cat >"$d/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d-spool
data_directory = $d-data
maillog_file_prefixes = $WORK
maillog_file = $WORK/upstream-postfix.log
myhostname = upstream.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
alias_maps =
alias_database =
virtual_mailbox_domains = regexp:$d/any.regexp
virtual_mailbox_base = $WORK/mail
virtual_mailbox_maps = regexp:$d/mailbox.regexp
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtp_host_lookup = native
smtpd_peername_lookup = no
smtpd_tls_cert_file = $WORK/tls/server.pem
smtpd_tls_key_file = $WORK/tls/server.key
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $WORK/dovecot/run/auth-postfix
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = check_recipient_access regexp:$d/reject.regexp, permit_sasl_authenticated, reject
line_length_limit = 8192
in_flow_delay = 0
# Short queue ids are reused once a queue file is gone (inode plus a
# microsecond field); the tests match queue ids across logs, so they must
# be unique for the whole run.
enable_long_queue_ids = yes
EOF
  postfix_master_cf \
    "127.0.0.1:$UP_STARTTLS_PORT inet n - n - - smtpd -o smtpd_sasl_mechanism_filter=xoauth2,oauthbearer" \
    "127.0.0.1:$UP_TLS_PORT inet n - n - - smtpd -o smtpd_tls_wrappermode=yes -o smtpd_sasl_mechanism_filter=xoauth2,oauthbearer" \
    "127.0.0.1:$UP_RELAY_PORT inet n - n - - smtpd -o smtpd_sasl_auth_enable=no" \
    "  -o { smtpd_relay_restrictions = permit_mynetworks, reject }" \
    "  -o { smtpd_recipient_restrictions = check_recipient_access regexp:$d/reject.regexp, permit_mynetworks, reject }" \
    >"$d/master.cf"
  start_postfix "$d" upstream
  wait_port "$UP_STARTTLS_PORT" "upstream postfix (STARTTLS)"
  wait_port "$UP_TLS_PORT" "upstream postfix (implicit TLS)"
}

# The client: a Postfix that relays everything through the proxy with
# AUTH PLAIN/LOGIN, as PowerMTA would. Mail to client.test (bounces to our
# own senders) is discarded, so only the test's messages reach the upstream.
# Mail it takes on CLIENT_PORT goes out with mandatory STARTTLS
# (smtp_tls_security_level = encrypt, the private CA, TLS connection reuse
# through tlsproxy); mail it takes on CLIENT_PLAIN_PORT goes out through the
# "plainrelay" transport (a content_filter to the same proxy) in plain text.
start_client_postfix() {
  local d="$WORK/client"
  mkdir -p "$d"
  cat >"$d/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d-spool
data_directory = $d-data
maillog_file_prefixes = $WORK
maillog_file = $WORK/client-postfix.log
myhostname = client.test
mydomain = client.test
myorigin = client.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
alias_maps =
alias_database =
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
local_header_rewrite_clients = static:all
transport_maps = inline:{client.test=discard:}
relayhost = [127.0.0.1]:$CLIENT_PROXY_PORT
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = static:$CLIENT_SASL_USER:$CLIENT_SASL_PASS
smtp_sasl_security_options = noanonymous
smtp_sasl_mechanism_filter = plain, login
# Mandatory STARTTLS to the proxy. "encrypt" does not check the name, but
# with the CA file Postfix logs "Trusted TLS connection" only when the chain
# verifies, which the tests require. Reuse needs tlsproxy (master.cf).
smtp_tls_security_level = encrypt
smtp_tls_CAfile = $WORK/tls/ca.pem
smtp_tls_connection_reuse = yes
smtp_tls_loglevel = 1
smtp_connection_cache_destinations = [127.0.0.1]:$CLIENT_PROXY_PORT
default_destination_concurrency_limit = 20
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
in_flow_delay = 0
enable_long_queue_ids = yes
EOF
  postfix_master_cf "127.0.0.1:$CLIENT_PORT inet n - n - - smtpd" \
    "127.0.0.1:$CLIENT_PLAIN_PORT inet n - n - - smtpd -o content_filter=plainrelay:[127.0.0.1]:$CLIENT_PROXY_PORT" \
    "plainrelay unix - - n - - smtp -o smtp_tls_security_level=none -o smtp_tls_connection_reuse=no" \
    >"$d/master.cf"
  start_postfix "$d" client
  wait_port "$CLIENT_PORT" "client postfix"
  wait_port "$CLIENT_PLAIN_PORT" "client postfix (plain relay)"
}

# stop_all stops, by PID, everything this run started: proxies the tests
# left behind, both Postfix instances, Dovecot and the issuer.
stop_all() {
  local f pid i
  for f in "$PIDS_DIR"/proxy-*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f"); kill "$pid" 2>/dev/null || true
  done
  for f in client upstream; do
    [ -e "$PIDS_DIR/postfix-$f.pid" ] || continue
    postfix -c "$WORK/$f" stop >/dev/null 2>&1 || true
  done
  if [ -e "$PIDS_DIR/dovecot.pid" ]; then kill "$(cat "$PIDS_DIR/dovecot.pid")" 2>/dev/null || true; fi
  if [ -e "$PIDS_DIR/issuer.pid" ]; then kill "$(cat "$PIDS_DIR/issuer.pid")" 2>/dev/null || true; fi
  # Wait for them, then make sure: SIGKILL whatever is left, by PID.
  for f in "$PIDS_DIR"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "stop: $(basename "$f" .pid) (pid $pid) did not stop; killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}

# dump_logs prints the peers' logs (their ends) for a failed run.
dump_logs() {
  local f n=${INTEROP_LOG_LINES:-80}
  for f in "$WORK/issuer.log" "$WORK/dovecot.log" "$WORK/upstream-postfix.log" \
           "$WORK/client-postfix.log" "$WORK"/proxy-*/proxy.log; do
    [ -e "$f" ] || continue
    echo "======== ${f#"$WORK"/} (last $n lines; whole file: $f)"
    tail -n "$n" "$f"
    if grep -qiE 'warning|error|fatal|panic' "$f"; then
      echo "-------- ${f#"$WORK"/}: warnings and errors (last 40)"
      grep -iE 'warning|error|fatal|panic' "$f" | tail -n 40
    fi
  done
}
