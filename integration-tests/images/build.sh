#!/usr/bin/env bash
# Builds local stand-ins for the official `postgres` and `redis` images, for machines that
# have a Docker engine but no container registry (see shared/notes/testcontainers-offline.md).
#
#   integration-tests/images/build.sh            # build the images that are missing
#   integration-tests/images/build.sh --force    # rebuild both (the debootstrap cache is kept)
#
# The images are tagged with exactly the names integration-tests/src/services.rs asks
# testcontainers for (Postgres/Redis from testcontainers-modules 0.15, `.with_tag(..)`):
#
#   postgres:15-bookworm   PostgreSQL 15 from Debian bookworm, entrypoint postgres-entrypoint.sh
#   redis:7.0-bookworm     Redis 7.0 from Debian bookworm, entrypoint redis-entrypoint.sh
#
# Both tags also exist upstream, so on a machine that reaches a registry the same harness
# pulls the official images instead and this script is not needed. Keep the two names below
# in step with POSTGRES_IMAGE/REDIS_IMAGE in services.rs.
#
# How: `debootstrap --variant=minbase bookworm` from the Debian mirror this machine's apt
# uses (cached as a tarball), then per image: unpack, `chroot … apt-get install` (nothing is
# started: policy-rc.d answers 101 and no PostgreSQL cluster is created), add the entrypoint,
# `tar | docker import` with ENTRYPOINT, CMD, ENV, EXPOSE.
#
# Needs root, debootstrap (installed with apt-get when missing) and a Docker engine that
# answers. Idempotent: an image that already exists is left alone. Environment:
#   HAUL_IMAGES_CACHE    where the debootstrap tarball and the work trees go
#                        (default /var/cache/haul-images)
#   HAUL_DEBIAN_MIRROR   the Debian mirror (default: the one apt uses for bookworm)
set -euo pipefail

POSTGRES_IMAGE=postgres:15-bookworm
REDIS_IMAGE=redis:7.0-bookworm
SUITE=bookworm

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
force=0
for arg in "$@"; do
	case "$arg" in
	--force) force=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "build.sh: unknown argument $arg (try --help)" >&2
		exit 2
		;;
	esac
done

log() { printf '[images] %s\n' "$*"; }
die() {
	printf '[images] error: %s\n' "$*" >&2
	exit 1
}

docker info >/dev/null 2>&1 ||
	die "no Docker engine answers (start dockerd, e.g. 'dockerd --ip 127.0.0.1 &'; on Debian: apt-get install docker.io)"

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

want_postgres=1
want_redis=1
if [ "$force" = 0 ]; then
	if image_exists "$POSTGRES_IMAGE"; then
		log "$POSTGRES_IMAGE exists, skipped"
		want_postgres=0
	fi
	if image_exists "$REDIS_IMAGE"; then
		log "$REDIS_IMAGE exists, skipped"
		want_redis=0
	fi
fi
if [ "$want_postgres" = 0 ] && [ "$want_redis" = 0 ]; then
	exit 0
fi

[ "$(id -u)" = 0 ] || die "building the images needs root (debootstrap, chroot)"
if ! command -v debootstrap >/dev/null; then
	log "installing debootstrap from Debian's packages"
	{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap; } \
		>/dev/null || die "could not install debootstrap (apt-get install debootstrap)"
fi

arch=$(dpkg --print-architecture)
cache=${HAUL_IMAGES_CACHE:-/var/cache/haul-images}
mkdir -p "$cache"
base_tar="$cache/$SUITE-minbase-$arch.tar"

mirror=${HAUL_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	# The mirror apt already uses for "$SUITE" main (the machine may have no other way out).
	# shellcheck disable=SC2016 # apt-get expands the $(FIELD)s
	mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' 2>/dev/null |
		awk -v s="$SUITE" '$2 == s && $3 == "main" { print $1; exit }')
	mirror=${mirror:-http://deb.debian.org/debian/}
fi

work=$(mktemp -d "$cache/work.XXXXXX")
cleanup() {
	# Unmount whatever is still mounted below the work tree before removing it.
	local mnt
	# shellcheck disable=SC2013 # mount points made here have no blanks
	for mnt in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do
		umount -l "$mnt" || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

if [ ! -s "$base_tar" ]; then
	log "debootstrap --variant=minbase $SUITE from $mirror (cached as $base_tar)"
	start=$SECONDS
	debootstrap --variant=minbase --arch="$arch" "$SUITE" "$work/base" "$mirror" >"$work/debootstrap.log" 2>&1 || {
		tail -n 30 "$work/debootstrap.log" >&2
		die "debootstrap failed (log above)"
	}
	tar --numeric-owner -C "$work/base" -cf "$base_tar.tmp" .
	mv "$base_tar.tmp" "$base_tar"
	rm -rf "$work/base"
	log "debootstrap done in $((SECONDS - start)) s"
else
	log "using the cached $base_tar"
fi

# build_image IMAGE ENTRYPOINT_SCRIPT PACKAGES -- DOCKER_IMPORT_CHANGES...
build_image() {
	local image=$1 entrypoint=$2 packages=$3
	shift 4
	local root="$work/${image%%:*}"
	local start=$SECONDS
	log "building $image (apt-get install $packages)"

	mkdir -p "$root"
	tar --numeric-owner -C "$root" -xf "$base_tar"

	# Nothing may start during the installation, and no PostgreSQL cluster is created:
	# the entrypoint initialises its own $PGDATA at container start.
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	mkdir -p "$root/etc/postgresql-common/createcluster.d"
	printf 'create_main_cluster = false\n' >"$root/etc/postgresql-common/createcluster.d/haul.conf"
	# The mirror may be a snapshot whose Release files have expired.
	printf 'Acquire::Check-Valid-Until "false";\n' >"$root/etc/apt/apt.conf.d/99haul-no-valid-until"
	printf 'deb %s %s main\n' "$mirror" "$SUITE" >"$root/etc/apt/sources.list"
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	cp /etc/hosts "$root/etc/hosts"

	mount -t proc proc "$root/proc"
	# shellcheck disable=SC2086 # $packages is a list
	if ! {
		chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get -q update &&
			chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
				apt-get -q install -y --no-install-recommends $packages
	} >"$work/apt-${image%%:*}.log" 2>&1; then
		tail -n 30 "$work/apt-${image%%:*}.log" >&2
		die "apt-get install $packages failed in the chroot (log above)"
	fi
	chroot "$root" apt-get clean
	umount "$root/proc"

	rm -rf "$root"/var/lib/apt/lists/* "$root/usr/sbin/policy-rc.d" "$root"/var/log/*.log \
		"$root/etc/apt/apt.conf.d/99haul-no-valid-until"
	: >"$root/etc/resolv.conf"
	printf '127.0.0.1\tlocalhost\n' >"$root/etc/hosts"
	install -m 755 "$here/$entrypoint" "$root/usr/local/bin/docker-entrypoint.sh"
	mkdir -p "$root/data" # the redis image's WORKDIR (the official images have it too)

	tar --numeric-owner -C "$root" -c . | docker import "$@" - "$image" >/dev/null
	rm -rf "$root"
	log "built $image in $((SECONDS - start)) s"
}

if [ "$want_postgres" = 1 ]; then
	build_image "$POSTGRES_IMAGE" postgres-entrypoint.sh postgresql -- \
		--change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV PGDATA=/var/lib/postgresql/data' \
		--change 'ENV LANG=C.UTF-8' \
		--change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
		--change 'CMD ["postgres"]' \
		--change 'EXPOSE 5432' \
		--change 'LABEL org.haul.local-image=postgres'
	# The PATH above names the server's version: fail here, not at container start, if it moved.
	docker run --rm --entrypoint /bin/sh "$POSTGRES_IMAGE" -c 'command -v postgres >/dev/null' ||
		die "$POSTGRES_IMAGE has no postgres in /usr/lib/postgresql/15/bin (has Debian's version changed?)"
fi

if [ "$want_redis" = 1 ]; then
	build_image "$REDIS_IMAGE" redis-entrypoint.sh redis-server -- \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV LANG=C.UTF-8' \
		--change 'WORKDIR /data' \
		--change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
		--change 'CMD ["redis-server"]' \
		--change 'EXPOSE 6379' \
		--change 'LABEL org.haul.local-image=redis'
fi

docker image ls --format '[images] {{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' |
	grep -E "^\[images\] ($POSTGRES_IMAGE|$REDIS_IMAGE) " || true
