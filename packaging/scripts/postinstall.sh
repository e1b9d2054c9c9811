#!/bin/sh
# After the files are in place (deb: postinst configure [OLD-VERSION]; rpm: %post 1 on install,
# 2 on upgrade). Makes /etc/xoauth2 the service user's, writes an admin API token if there is
# none, and on a first install enables the service without starting it: the unit refuses to
# start while /etc/xoauth2/accounts.json is the sample (check-config says what to do).
set -e

user=xoauth2-proxy
dir=/etc/xoauth2
first=
case "$1" in
configure) [ -n "$2" ] || first=1 ;;
1) first=1 ;;
2) ;;
*) exit 0 ;; # deb: abort-upgrade, abort-remove, abort-deconfigure
esac

# Packages unpack these as the service user already; an install on a host where the user did
# not resolve at unpack time (or files an older package left as root) is put right here.
chown "$user:$user" "$dir"
chmod 0700 "$dir"
if [ -n "$first" ]; then
	for f in config.json accounts.json; do
		# Not through a symlink: the operator may point accounts.json elsewhere on purpose.
		if [ -f "$dir/$f" ] && [ ! -L "$dir/$f" ]; then
			chown "$user:$user" "$dir/$f"
			chmod 0600 "$dir/$f"
		fi
	done
fi

# The admin API's bearer token (64 hex digits), made once; purge removes it.
if [ ! -e "$dir/admin-token" ]; then
	(
		umask 077
		od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$dir/admin-token.new"
		echo >>"$dir/admin-token.new"
	)
	chown "$user:$user" "$dir/admin-token.new"
	mv "$dir/admin-token.new" "$dir/admin-token"
fi

if command -v systemctl >/dev/null 2>&1; then
	# daemon-reload and restart only where systemd runs (not in a container or image build);
	# enable works without it (it only writes the symlink in /etc/systemd/system).
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	if [ -n "$first" ]; then
		systemctl enable xoauth2-proxy.service || true
	elif [ -d /run/systemd/system ]; then
		systemctl try-restart xoauth2-proxy.service || true
	fi
fi

if [ -n "$first" ]; then
	cat <<'MSG'

xoauth2-proxy is installed and enabled, but not started: /etc/xoauth2/accounts.json holds
sample accounts, and the service refuses to start on them. Next:
  1. Put your accounts in /etc/xoauth2/accounts.json (xoauth2-proxy accounts add -h, or copy in
     the old tool's accounts.json) and delete its "_sample" line; review /etc/xoauth2/config.json.
  2. sudo -u xoauth2-proxy xoauth2-proxy check-config --config /etc/xoauth2/config.json --accounts /etc/xoauth2/accounts.json
  3. systemctl start xoauth2-proxy
The proxy listens on 127.0.0.1:2525, its admin API on 127.0.0.1:9090 with the token in
/etc/xoauth2/admin-token. README: /usr/share/doc/xoauth2-proxy/README.md

MSG
fi
exit 0
