#!/bin/sh
# Lays out opmond as the .deb does: binary, systemd unit, configuration, TLS
# folder and data folder, with their owners and modes. Called by
# `make install`; DESTDIR installs into a staging tree.
#
#   DESTDIR   staging root (default: none, the live system)
#   BINARY    the binary to install (default ./opmond)
#   OPMOND_USER  the service user (default opmond)
set -eu
DESTDIR=${DESTDIR:-}
BINARY=${BINARY:-./opmond}
OPMOND_USER=${OPMOND_USER:-opmond}
here=$(dirname "$0")

[ -x "$BINARY" ] || { echo "install: $BINARY is missing: run 'make build' first" >&2; exit 1; }

# Owners can be set only by root and only for a user that exists; otherwise
# the files get the installer's owner and the commands that fix it are
# printed at the end.
chown_ok=yes
if [ "$(id -u)" -ne 0 ]; then
	chown_ok=no
	why="not running as root"
elif ! getent passwd "$OPMOND_USER" >/dev/null 2>&1; then
	chown_ok=no
	why="user $OPMOND_USER does not exist (create it: useradd --system --user-group --home-dir /var/lib/opmond --shell /usr/sbin/nologin $OPMOND_USER)"
fi
later=""

# put MODE OWNER:GROUP SOURCE DEST — install a file; a configuration file that
# exists is kept (an upgrade never overwrites the operator's settings).
put() {
	mode=$1 owner=$2 src=$3 dst=$DESTDIR$4 keep=${5:-}
	if [ -n "$keep" ] && [ -e "$dst" ]; then
		echo "kept     $dst (exists)"
		return
	fi
	install -D -m "$mode" "$src" "$dst"
	own "$owner" "$dst"
	echo "file     $dst $mode $owner"
}

# dir MODE OWNER:GROUP DEST
dir() {
	mode=$1 owner=$2 dst=$DESTDIR$3
	install -d -m "$mode" "$dst"
	own "$owner" "$dst"
	echo "dir      $dst $mode $owner"
}

own() {
	if [ "$chown_ok" = yes ] || { [ "$(id -u)" -eq 0 ] && [ "$1" = root:root ]; }; then
		chown "$1" "$2"
	else
		later="$later
  chown $1 $2"
	fi
}

put 0755 root:root "$BINARY" /usr/bin/opmond
put 0644 root:root "$here/opmond.service" /usr/lib/systemd/system/opmond.service
dir 0750 "root:$OPMOND_USER" /etc/opmond
dir 0750 "root:$OPMOND_USER" /etc/opmond/ssl
put 0640 "root:$OPMOND_USER" "$here/opmond.toml" /etc/opmond/opmond.toml keep
dir 0750 "$OPMOND_USER:$OPMOND_USER" /var/lib/opmond
put 0644 root:root "$here/../docs/opmond.example.toml" /usr/share/doc/opmond/opmond.example.toml

if [ "$chown_ok" = no ]; then
	echo "owners not set: $why; as root, run:$later" >&2
fi
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
fi
echo "next: opmond check-config --config /etc/opmond/opmond.toml && systemctl enable --now opmond"
