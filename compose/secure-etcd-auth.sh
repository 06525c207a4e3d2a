#!/usr/bin/env bash
# Once, after `docker compose -f compose/secure.yml up -d --wait`: etcd users root, app and
# other with the passwords of compose/secrets/, roles app and other (readwrite on the key
# prefixes /app and /other), then `auth enable`; what LocalCluster(secure=True) does
# (coordination/lab/secure.py). Runs etcdctl inside etcd1 as root (client certificate
# CN=root); passwords go through stdin, never on a command line. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
ctl() {
    docker compose -f secure.yml exec -T etcd1 /usr/local/bin/etcdctl \
        --endpoints=https://127.0.0.1:2379 --cacert=/secrets/ca.pem \
        --cert=/secrets/client-root.pem --key=/secrets/client-root-key.pem "$@"
}
# ctl ARGS, tolerating an error that contains $1 ("already exists" on a second run).
tolerate() {
    local expected=$1 out
    shift
    if ! out=$(ctl "$@" 2>&1); then
        grep -q "$expected" <<<"$out" || { echo "etcdctl $*: $out" >&2; exit 1; }
    fi
}
for user in root app other; do
    tolerate "already exists" user add "$user" --interactive=false <"secrets/$user.password"
done
tolerate "already exists" role add root </dev/null
tolerate "already" user grant-role root root </dev/null
for user in app other; do
    tolerate "already exists" role add "$user" </dev/null
    ctl role grant-permission "$user" readwrite "/$user" --prefix=true >/dev/null </dev/null
    tolerate "already" user grant-role "$user" "$user" </dev/null
done
ctl auth enable </dev/null
echo "etcd: users root, app, other; auth enabled"
