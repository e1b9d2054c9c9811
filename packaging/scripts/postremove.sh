#!/bin/sh
# After the files are gone (deb: postrm remove | purge | upgrade | ...; rpm: %postun 0 on
# erase, 1 on upgrade).
#
# purge (deb only) removes, besides the configuration files dpkg purges itself, what the package
# and the service made in /etc/xoauth2: the admin token, the token state (rotated refresh
# tokens), the sending budgets, lock files and left-over temporary files; then the directory, if
# nothing else is in it (files the operator added, such as certificates, keep it). The system
# user stays: files elsewhere may still belong to it, and a reinstall reuses it.
# rpm has no purge: an erase keeps /etc/xoauth2, edited configuration as *.rpmsave.
set -e

dir=/etc/xoauth2
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	;;
purge)
	rm -f "$dir/admin-token" "$dir/admin-token.new" \
		"$dir/token-state.json" "$dir/token-state.json.lock" \
		"$dir/budgets.json" "$dir/budgets.json.lock" \
		"$dir/accounts.json.lock" "$dir"/.*.tmp-*
	rmdir "$dir" 2>/dev/null || true
	;;
esac
exit 0
