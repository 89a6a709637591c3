#!/bin/sh
# Installs the peer the load tool compares notesync with: Centrifugo, built
# from source by the Go toolchain (about 3 minutes here), and redis-server
# from Debian for Centrifugo's multi-node mode. For benchmarks only: CI and
# `make test` never run it.
#
#   bench/centrifugo.sh            install into $NOTESYNC_PEER_DIR
#                                  (default ~/.cache/notesync-bench)
#   go run ./bench -target both …  then finds it there
set -eu
version=v6.9.1
dir=${NOTESYNC_PEER_DIR:-$HOME/.cache/notesync-bench}
mkdir -p "$dir"
if [ -x "$dir/centrifugo" ] && go version -m "$dir/centrifugo" 2>/dev/null | grep -q "centrifugo/v6[[:space:]]*$version"; then
	echo "centrifugo $version already in $dir"
else
	echo "building centrifugo $version into $dir (a few minutes)"
	GOBIN="$dir" go install "github.com/centrifugal/centrifugo/v6@$version"
fi
if ! command -v redis-server >/dev/null 2>&1; then
	echo "installing redis-server (Debian)"
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
	else
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
	fi
fi
# Debian's package may start a system-wide redis; the tool runs its own on
# a free port and stops it, so that one is not needed.
echo "centrifugo: $dir/centrifugo"
echo "redis-server: $(command -v redis-server)"
