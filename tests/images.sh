#!/bin/sh
# Build the local test images (no registry is reachable):
#   local/busybox:1  a rootfs of busybox-static and its applet links;
#   local/caddy:1    local/busybox:1 plus Debian's /usr/bin/caddy and the shared libraries
#                    ldd says it needs (built only where caddy is installed).
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! docker image inspect local/busybox:1 >/dev/null 2>&1; then
  mkdir -p "$tmp/bb/bin" "$tmp/bb/www" "$tmp/bb/tmp" "$tmp/bb/etc"
  cp /bin/busybox "$tmp/bb/bin/busybox"
  for a in $("$tmp/bb/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$tmp/bb/bin/$a"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$tmp/bb/etc/passwd"
  echo 'root:x:0:' > "$tmp/bb/etc/group"
  echo 'hello from pgo' > "$tmp/bb/www/index.html"
  tar -C "$tmp/bb" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - local/busybox:1 >/dev/null
  echo "built local/busybox:1"
fi

if [ -x /usr/bin/caddy ] && ! docker image inspect local/caddy:1 >/dev/null 2>&1; then
  ctx="$tmp/caddy"
  mkdir -p "$ctx/lib"
  cp /usr/bin/caddy "$ctx/caddy"
  # the libraries the dynamic linker resolves (libzstd, libc) and the linker itself
  {
    echo 'FROM local/busybox:1'
    echo 'COPY caddy /usr/bin/caddy'
  } > "$ctx/Dockerfile"
  for lib in $(ldd /usr/bin/caddy | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    name=$(basename "$lib")
    cp -L "$lib" "$ctx/lib/$name"
    echo "COPY lib/$name $lib" >> "$ctx/Dockerfile"
  done
  echo 'ENV PATH=/usr/bin:/bin HOME=/root XDG_DATA_HOME=/data XDG_CONFIG_HOME=/config' >> "$ctx/Dockerfile"
  echo 'CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]' >> "$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t local/caddy:1 "$ctx" >/dev/null 2>"$tmp/build.log" \
    || { cat "$tmp/build.log" >&2; exit 1; }
  echo "built local/caddy:1"
fi
