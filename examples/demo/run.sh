#!/bin/sh
# The demo: an example service repository (examples/demo/repo) served from a local bare
# repository, its own unix user and SSH key, and pgod tracking it in the foreground.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
home=/var/lib/pgo-demo
user=pgo-demo
port=${PGO_DEMO_SSH_PORT:-2222}
mkdir -p "$home"
id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"

if [ ! -d "$home/upstream.git" ]; then
    rm -rf "$home/work"
    cp -r "$top/examples/demo/repo" "$home/work"
    mkdir -p "$home/work/ssh"
    ssh-keygen -q -t ed25519 -N '' -C pgo-demo -f "$home/id_demo"
    cp "$home/id_demo.pub" "$home/work/ssh/id_demo.pub"
    git -C "$home/work" init -q -b main
    git -C "$home/work" add -A
    git -C "$home/work" -c user.name=demo -c user.email=demo@localhost commit -q -m "demo service"
    git clone -q --bare "$home/work" "$home/upstream.git"
    git -C "$home/work" remote add origin "$home/upstream.git"
fi
chmod -R a+rX "$home/upstream.git"
chmod 0755 "$home"

cat > "$home/pgo.toml" <<TOML
[[services]]
name = "demo"
user = "$user"
repository = "$home/upstream.git"
branch = "main"
env = [ "GREETING=hello" ]
TOML
chmod 600 "$home/pgo.toml"

pgoctl="$top/.venv/bin/pgoctl -i $home/id_demo -p $port"
cat <<MSG

pgo demo: pgod tracks $home/upstream.git (branch main) as user $user.
In another terminal, try:

  $pgoctl localhost:demo//ping
  $pgoctl localhost:demo//ps
  $pgoctl localhost:demo//status
  $pgoctl -- localhost:demo//exec web wget -qO- http://127.0.0.1:8080/
  $pgoctl -- localhost:demo//logs --tail 5 web
  ssh -p $port -i $home/id_demo localhost demo//ps

Change the service and watch pgod redeploy it (or run ...//git pull to skip the wait):

  cd $home/work && sed -i 's/Hello/Hi/' www/index.html && git commit -qam hi && git push -q origin main
  echo 'x-pgo-version: 2' >> compose.yaml && git commit -qam v2 && git push -q origin main

Stop with Ctrl-C (containers keep running; 'touch $home/dir/demo.stop' downs them).

MSG
exec "$top/.venv/bin/pgod" -c "$home/pgo.toml" -d "$home/dir" --datadir "$home/data" \
    -t 30s -s ":$port" -m "127.0.0.1:9112"
