#!/bin/sh
# Before the files are unpacked (deb: preinst install|upgrade; rpm: %pre 1|2): the system user
# xoauth2-proxy, so that /etc/xoauth2 and its files can be unpacked as its own. No login shell,
# no home directory. It is kept on removal and purge (README "Install from a package").
set -e

user=xoauth2-proxy
if ! getent group "$user" >/dev/null; then
	groupadd --system "$user"
fi
if ! getent passwd "$user" >/dev/null; then
	shell=/usr/sbin/nologin
	[ -x "$shell" ] || shell=/sbin/nologin
	[ -x "$shell" ] || shell=/bin/false
	useradd --system --gid "$user" --no-create-home --home-dir /nonexistent --shell "$shell" \
		--comment "xoauth2-proxy SMTP relay" "$user"
fi
exit 0
