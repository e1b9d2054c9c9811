#!/usr/bin/env bash
# The packages end to end (issue 18): make packages builds the .deb and .rpm for amd64 and
# arm64; the .rpm files are read with rpm -qp (layout, config flags, scriptlets). The .deb of
# this machine's architecture is installed with dpkg, every installed path's owner and mode is
# checked, the installed binary checks the installed samples (which parse and are refused as
# samples), the unit passes systemd-analyze verify, an upgrade to a second build keeps edited
# configuration, and remove and purge leave what README "Install from a package" says. Then the
# same round with the .rpm through Debian's rpm (install, upgrade, erase), which runs the
# scriptlets with rpm's arguments as RHEL would; RHEL's own tools are not here.
#
# Runs as root and changes the system: it installs Debian's rpm, systemd and shellcheck
# packages if missing, and installs and removes xoauth2-proxy (the rpm database it uses is a
# temporary one). It refuses to run where xoauth2-proxy or /etc/xoauth2 is already there, and
# leaves the machine as it found it (also on failure), the system user included. Needs no
# running systemd (CI runs in a container). About 20 s once Go's caches are warm; the first run
# also builds nfpm and Go's arm64 standard library (1-2 minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() {
	echo "FAIL: $*" >&2
	exit 1
}
pass() { echo "ok: $*"; }

[ "$(id -u)" -eq 0 ] || fail "run as root (dpkg -i)"
command -v dpkg >/dev/null || fail "needs a Debian machine (dpkg)"

missing=()
command -v rpm >/dev/null || missing+=(rpm)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v make >/dev/null || missing+=(make)
command -v shellcheck >/dev/null || missing+=(shellcheck)
if [ ${#missing[@]} -gt 0 ]; then
	echo "== apt-get install ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The maintainer scripts run under dash (Debian) and bash as sh (RHEL): POSIX sh, checked.
shellcheck packaging/scripts/*.sh packaging/version.sh test/packages/run.sh || fail "shellcheck"
echo "ok: shellcheck: packaging/scripts, packaging/version.sh, this script"

user=xoauth2-proxy
if dpkg-query -W -f='${db:Status-Status}' xoauth2-proxy 2>/dev/null | grep -qv '^not-installed$'; then
	fail "xoauth2-proxy is installed on this machine: this test installs and purges it; run it elsewhere"
fi
[ ! -e /etc/xoauth2 ] || fail "/etc/xoauth2 exists: this test would purge it; run it elsewhere"
had_user=
if getent passwd "$user" >/dev/null; then had_user=1; fi
had_group=
if getent group "$user" >/dev/null; then had_group=1; fi

work=$(mktemp -d)
cleanup() {
	status=$?
	if dpkg-query -W -f='${db:Status-Status}' xoauth2-proxy 2>/dev/null | grep -qv '^not-installed$'; then
		dpkg -P xoauth2-proxy >/dev/null 2>&1 || true
	fi
	rm -rf /etc/xoauth2 "$work"
	if [ -z "$had_user" ] && getent passwd "$user" >/dev/null; then userdel "$user" || true; fi
	if [ -z "$had_group" ] && getent group "$user" >/dev/null; then groupdel "$user" || true; fi
	[ "$status" -eq 0 ] || echo "test/packages/run.sh: FAILED (the machine is cleaned up)" >&2
}
trap cleanup EXIT

# What the packages install: path, mode, owner, group. Every installed path is in this list
# and every path in it is installed ("/" and the directories above the files included).
expected_layout() {
	cat <<'LAYOUT'
/etc 755 root root
/etc/xoauth2 700 xoauth2-proxy xoauth2-proxy
/etc/xoauth2/accounts.json 600 xoauth2-proxy xoauth2-proxy
/etc/xoauth2/config.json 600 xoauth2-proxy xoauth2-proxy
/usr 755 root root
/usr/bin 755 root root
/usr/bin/xoauth2-proxy 755 root root
/usr/lib 755 root root
/usr/lib/systemd 755 root root
/usr/lib/systemd/system 755 root root
/usr/lib/systemd/system/xoauth2-proxy.service 644 root root
/usr/share 755 root root
/usr/share/doc 755 root root
/usr/share/doc/xoauth2-proxy 755 root root
/usr/share/doc/xoauth2-proxy/README.md 644 root root
/usr/share/doc/xoauth2-proxy/config.md 644 root root
LAYOUT
}
# The files of the layout that the .rpm owns (rpm lists no directory it does not own).
rpm_layout() { expected_layout | grep -E '^/etc/xoauth2|xoauth2-proxy(\.service|/| )'; }
conffile_list=(/etc/xoauth2/accounts.json /etc/xoauth2/config.json)
conffiles="${conffile_list[*]}"
unit=/usr/lib/systemd/system/xoauth2-proxy.service
wants=/etc/systemd/system/multi-user.target.wants/xoauth2-proxy.service

# same WHAT GOT WANT: fail with both texts unless equal.
same() {
	[ "$2" == "$3" ] && return 0
	echo "--- $1: got"
	echo "$2"
	echo "--- want"
	echo "$3"
	echo "--- diff"
	diff <(echo "$2") <(echo "$3") || true
	fail "$1"
}

# check_installed LABEL deb|rpm: every path the package manager lists has the mode and owner
# of the layout, the configuration files are marked so, and postinstall's work is there.
check_installed() {
	local got="" paths want conf
	case $2 in
	deb)
		paths=$(dpkg -L xoauth2-proxy | grep -vx '/\.' | sort)
		want=$(expected_layout)
		conf=$(dpkg-query -W -f='${Conffiles}\n' xoauth2-proxy | awk 'NF {print $1}' | sort | xargs)
		;;
	rpm)
		paths=$(rpmdb -ql xoauth2-proxy | sort)
		want=$(rpm_layout)
		conf=$(rpmdb -qc xoauth2-proxy | sort | xargs)
		;;
	esac
	while read -r p; do
		got+="$p $(stat -c '%a %U %G' "$p")"$'\n'
	done <<<"$paths"
	same "installed paths, modes and owners ($1)" "${got%$'\n'}" "$want"
	same "configuration files ($1)" "$conf" "$conffiles"
	same "admin token's mode and owner ($1)" "$(stat -c '%a %U %G' /etc/xoauth2/admin-token)" "600 $user $user"
	grep -Eqx '[0-9a-f]{64}' /etc/xoauth2/admin-token || fail "admin-token is not 64 hex digits ($1)"
	same "enabled ($1): multi-user.target.wants links to the unit" "$(readlink -f "$wants")" "$(readlink -f "$unit")"
	pass "layout, modes, owners, configuration files, admin token, enable link ($1)"
}

# rpmdb ARGS: Debian's rpm with a database of its own in the work directory (not the machine's),
# without its advice to use alien.
rpmdb() { rpm --dbpath "$work/rpmdb" "$@" 2> >(grep -v -e 'use Alien' -e 'assuming you know' >&2); }

# first_install LABEL LOG: the first install said what to do next, and made the system user.
first_install() {
	grep -q "installed and enabled, but not started" "$2" || {
		cat "$2"
		fail "$1: the first install does not say what to do next"
	}
	IFS=: read -r _ _ uid _ _ home shell < <(getent passwd "$user") || fail "$1: no user $user"
	[ "$uid" -lt 1000 ] || fail "$user is not a system user (uid $uid)"
	case "$shell" in */nologin | /bin/false) ;; *) fail "$user has a login shell: $shell" ;; esac
	if [ "$home" != /nonexistent ] || [ -e "$home" ]; then fail "$user has a home directory: $home"; fi
	pass "$1; it says what to do next; system user $user (uid $uid, shell $shell, no home)"
}

# samples_refused: the installed binary parses the installed samples and refuses them as
# samples, and so does the unit's ExecStartPre.
samples_refused() {
	local out code
	set +e
	out=$(runuser -u "$user" -- /usr/bin/xoauth2-proxy check-config \
		--config /etc/xoauth2/config.json --accounts /etc/xoauth2/accounts.json 2>&1)
	code=$?
	set -e
	printf '%s\n' "$out" | sed 's/^/    /'
	[ "$code" -eq 1 ] || fail "check-config on the samples: exit $code, want 1"
	grep -q "^accounts: /etc/xoauth2/accounts.json: 3 " <<<"$out" || fail "the sample accounts do not parse"
	grep -q "edit /etc/xoauth2/accounts.json: it still holds the sample accounts" <<<"$out" || fail "no sample message"
	! grep -q "^warning:" <<<"$out" || fail "warnings on the installed samples"
	exec_start_pre >/dev/null 2>&1 && fail "the unit's ExecStartPre accepts the samples"
	pass "samples parse, are refused as samples with what to do, unit's ExecStartPre refuses them"
}

# operator_edits: what an operator does before the first start, and what the service then
# writes; sets token and sums for upgrade_kept.
operator_edits() {
	local out
	sed -i '/"_sample"/d' /etc/xoauth2/accounts.json
	sed -i 's/"relay.example.net"/"relay.edited-by-ci.example"/' /etc/xoauth2/config.json
	grep -q relay.edited-by-ci.example /etc/xoauth2/config.json || fail "the edit did not take"
	runuser -u "$user" -- sh -c 'umask 077; echo "{}" >/etc/xoauth2/token-state.json' # as the service would
	out=$(exec_start_pre 2>&1) || fail "ExecStartPre refuses the edited files: $out"
	grep -q "configuration OK" <<<"$out" || fail "ExecStartPre: no 'configuration OK': $out"
	pass "edited config.json and accounts.json; ExecStartPre accepts them"
	token=$(cat /etc/xoauth2/admin-token)
	sums=$(md5sum "${conffile_list[@]}")
}

# upgrade_kept LABEL LOG: the upgrade kept what operator_edits wrote.
upgrade_kept() {
	same "edited configuration files ($1)" "$(md5sum "${conffile_list[@]}")" "$sums"
	grep -q relay.edited-by-ci.example /etc/xoauth2/config.json || fail "config.json edit lost ($1)"
	same "admin token ($1)" "$(cat /etc/xoauth2/admin-token)" "$token"
	[ -f /etc/xoauth2/token-state.json ] || fail "$1 removed the token state"
	! grep -q "not started" "$2" || fail "$1 repeats the first-install message"
	pass "$1 kept the edited config.json and accounts.json, the admin token and the token state"
}

# program_gone LABEL: binary, unit, enable link and docs are gone.
program_gone() {
	for p in /usr/bin/xoauth2-proxy "$unit" "$wants" /usr/share/doc/xoauth2-proxy; do
		if [ -e "$p" ] || [ -L "$p" ]; then fail "$p is still there after $1"; fi
	done
}

# entries DIR: the names in DIR, sorted, on one line.
entries() { find "$1" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | xargs; }

# The unit's ExecStartPre command, run as the service user, as systemd would.
exec_start_pre() {
	local cmd
	cmd=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$unit" | sed -n 's/^ExecStartPre=//p')
	[ -n "$cmd" ] || fail "the unit has no ExecStartPre"
	# shellcheck disable=SC2086 # the unit's command line, split into words as systemd does
	runuser -u "$user" -- $cmd
}

echo "== make packages"
make --no-print-directory packages DIST="$work/v1"
v1=$(packaging/version.sh)
arch=$(dpkg --print-architecture)
for f in "xoauth2-proxy_${v1}_amd64.deb" "xoauth2-proxy_${v1}_arm64.deb" \
	"xoauth2-proxy-${v1}-1.x86_64.rpm" "xoauth2-proxy-${v1}-1.aarch64.rpm"; do
	[ -f "$work/v1/$f" ] || fail "make packages made no $f: $(ls "$work/v1")"
done
pass "make packages: .deb and .rpm for amd64 and arm64, version $v1"
deb1="$work/v1/xoauth2-proxy_${v1}_${arch}.deb"

echo "== the .rpm files (rpm -qp)"
for rpmf in "$work"/v1/*.rpm; do
	name=$(basename "$rpmf")
	got=$(rpm -qp --qf '[%{FILENAMES} %{FILEMODES:octal} %{FILEUSERNAME} %{FILEGROUPNAME}\n]' "$rpmf" |
		awk '{printf "%s %s %s %s\n", $1, substr($2, length($2) - 2), $3, $4}' | sort)
	same "$name: rpm -qp file list" "$got" "$(rpm_layout)"
	same "$name: rpm -qplv lists the same" "$(rpm -qpl "$rpmf" | sort)" "$(rpm_layout | awk '{print $1}')"
	same "$name: %config(noreplace) files" "$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpmf" | awk '$1 ~ /c/ && $1 ~ /n/ {print $2}' | sort | xargs)" "$conffiles"
	scripts=$(rpm -qp --scripts "$rpmf")
	for s in "preinstall scriptlet" "postinstall scriptlet" "preuninstall scriptlet" "postuninstall scriptlet"; do
		grep -q "^$s" <<<"$scripts" || fail "$name: no $s in rpm -qp --scripts"
	done
	for tag in PREIN:preinstall POSTIN:postinstall PREUN:preremove POSTUN:postremove; do
		same "$name: %{${tag%%:*}} is packaging/scripts/${tag#*:}.sh" \
			"$(rpm -qp --qf "%{${tag%%:*}}" "$rpmf")" "$(cat "packaging/scripts/${tag#*:}.sh")"
	done
	pass "$name: layout, modes, owners, %config(noreplace), the four scriptlets"
done
for debf in "$work"/v1/*.deb; do
	got=$(dpkg-deb -c "$debf" | awk '{print $1, $2, $6}')
	same "$(basename "$debf"): contents like the $arch .deb" "$got" "$(dpkg-deb -c "$deb1" | awk '{print $1, $2, $6}')"
done

echo "== dpkg -i $(basename "$deb1")"
dpkg -i "$deb1" </dev/null >"$work/install.log" 2>&1 || {
	cat "$work/install.log"
	fail "dpkg -i"
}
first_install "dpkg -i" "$work/install.log"
check_installed "dpkg -i" deb

# verify exits 0 on an unknown key or a value it cannot parse (it only says so): no output at all.
out=$(systemd-analyze verify --man=no "$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
[ -z "$out" ] || fail "systemd-analyze verify $unit: $out"
pass "systemd-analyze verify $unit"

got=$(/usr/bin/xoauth2-proxy --help)
for c in serve check-config hash-password accounts token send demo bench version; do
	grep -q "^  $c " <<<"$got" || fail "installed xoauth2-proxy --help lacks $c"
done
pass "installed binary: $(/usr/bin/xoauth2-proxy version), --help lists the subcommands"

echo "== check-config on the installed samples (as $user)"
samples_refused
echo "== the operator writes the configuration"
operator_edits

echo "== upgrade (dpkg -i)"
if [[ $v1 == *+* ]]; then v2=$v1.ci2; else v2=$v1+ci2; fi
make --no-print-directory packages DIST="$work/v2" PKG_VERSION="$v2" PKG_ARCHS="$arch" >/dev/null
dpkg --compare-versions "$v2" gt "$v1" || fail "$v2 is not newer than $v1"
dpkg -i "$work/v2/xoauth2-proxy_${v2}_${arch}.deb" </dev/null >"$work/upgrade.log" 2>&1 || {
	cat "$work/upgrade.log"
	fail "dpkg -i (upgrade)"
}
same "installed version" "$(dpkg-query -W -f='${Version}' xoauth2-proxy)" "$v2"
upgrade_kept "dpkg upgrade $v1 -> $v2" "$work/upgrade.log"
check_installed "dpkg upgrade" deb

echo "== dpkg -r"
echo "operator's file" >/etc/xoauth2/operator-cert.pem
dpkg -r xoauth2-proxy </dev/null >/dev/null
same "status after remove" "$(dpkg-query -W -f='${db:Status-Status}' xoauth2-proxy)" "config-files"
program_gone "dpkg -r"
same "/etc/xoauth2 after remove" "$(entries /etc/xoauth2)" "accounts.json admin-token config.json operator-cert.pem token-state.json"
pass "dpkg -r: program, unit, enable link gone; configuration and state kept"

echo "== dpkg -P"
dpkg -P xoauth2-proxy </dev/null >/dev/null
dpkg-query -W -f='${db:Status-Status}' xoauth2-proxy 2>/dev/null | grep -qv '^not-installed$' && fail "still known to dpkg after purge"
same "/etc/xoauth2 after purge (only the operator's own file)" "$(entries /etc/xoauth2)" "operator-cert.pem"
rm -r /etc/xoauth2
getent passwd "$user" >/dev/null || fail "purge removed the user (README says it stays)"
pass "dpkg -P: configuration, admin token and token state gone; the operator's file and the user stay"

# The same round with the .rpm: Debian's rpm installs it into this machine's root and runs its
# scriptlets with rpm's arguments (1 and 2, 0), as on RHEL; dependencies are not checked (its
# database knows nothing of Debian's packages). The user made by dpkg goes first, so that
# preinstall makes it again.
case $arch in amd64) rpmarch=x86_64 ;; arm64) rpmarch=aarch64 ;; *) fail "no .rpm for $arch" ;; esac
if [ -z "$had_user" ]; then
	userdel "$user"
	if getent group "$user" >/dev/null; then groupdel "$user"; fi
fi
echo "== rpm -i $(basename "$work/v1/xoauth2-proxy-${v1}-1.$rpmarch.rpm")"
mkdir "$work/rpmdb"
rpmdb --initdb
rpmdb -i --nodeps "$work/v1/xoauth2-proxy-${v1}-1.$rpmarch.rpm" >"$work/rpm-install.log" 2>&1 || {
	cat "$work/rpm-install.log"
	fail "rpm -i"
}
first_install "rpm -i" "$work/rpm-install.log"
check_installed "rpm -i" rpm
out=$(rpmdb -V xoauth2-proxy 2>&1) || fail "rpm -V after install: $out"
samples_refused
operator_edits

echo "== upgrade (rpm -U)"
rpmdb -U --nodeps "$work/v2/xoauth2-proxy-${v2}-1.$rpmarch.rpm" >"$work/rpm-upgrade.log" 2>&1 || {
	cat "$work/rpm-upgrade.log"
	fail "rpm -U"
}
same "installed version" "$(rpmdb -q --qf '%{VERSION}' xoauth2-proxy)" "$v2"
upgrade_kept "rpm upgrade $v1 -> $v2" "$work/rpm-upgrade.log"
check_installed "rpm upgrade" rpm

echo "== rpm -e"
rpmdb -e xoauth2-proxy >/dev/null 2>&1
program_gone "rpm -e"
same "/etc/xoauth2 after rpm -e (edited configuration saved as .rpmsave)" "$(entries /etc/xoauth2)" \
	"accounts.json.rpmsave admin-token config.json.rpmsave token-state.json"
pass "rpm -e: program, unit, enable link gone; edited configuration kept as .rpmsave, token and state kept"
echo "test/packages: all checks passed"
