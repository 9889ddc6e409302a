#!/bin/bash
# Entrypoint of the local stand-in for the official `redis` image (see build.sh).
#
# Like the official image: arguments that start with '-' (or a *.conf file) are passed to
# redis-server, the server runs as the redis user in /data, logs to stdout ("Ready to accept
# connections", which testcontainers-modules waits for) and runs with protected mode off, so
# that clients outside the container may connect without a password.
set -Eeuo pipefail

if [ "${1:0:1}" = '-' ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ]; then
	case " $* " in
	*' --protected-mode '*) ;;
	*) set -- "$@" --protected-mode no ;;
	esac
	if [ "$(id -u)" = '0' ]; then
		mkdir -p /data
		chown redis:redis /data
		exec setpriv --reuid=redis --regid=redis --init-groups "${BASH_SOURCE[0]}" "$@"
	fi
fi

exec "$@"
