#!/usr/bin/env bash
# The Quick start's "try your config in the demo" step, run for real
# (README "Quick start"): scripts/run.sh --config FILE serves the demo
# gateway with FILE's plugin configuration, and requests are decided by it.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
dir="$TOOLS/quickstart"
rm -rf "$dir"; mkdir -p "$dir"
# A config of the Quick start's kind: a header rule and a keyed split (no key:
# no lane, so the keyless request is base every time, not by chance).
cat >"$dir/my-config.json" <<'JSON'
{
  "responseHeader": true,
  "lanes": [
    { "name": "gray", "match": { "header": "x-try", "exact": "yes" } },
    { "name": "canary", "split": { "key": { "header": "x-user-id" }, "percent": 10, "onMissingKey": "exclude" } }
  ]
}
JSON
scripts/run.sh --config "$dir/my-config.json" -l warning >"$dir/run.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
wait_ready quickstart "$pid" 9901 "$dir/run.log"
expect() {
    local want="$1"; shift
    local got
    got="$(curl -s -D - -o /dev/null "$@" http://127.0.0.1:10000/ | tr -d '\r' | sed -n 's/^x-graylane: //Ip')"
    if [ "$got" != "$want" ]; then
        echo "scripts/run.sh --config: curl $* gave lane '$got', want '$want'; log:" >&2
        tail -20 "$dir/run.log" >&2
        exit 1
    fi
    echo "ok: curl $* -> $got"
}
expect gray -H 'x-try: yes'
expect base
# The explain of the same config agrees for a keyed user.
for u in user-1 user-2; do
    want="$(target/debug/graylane explain "$dir/my-config.json" -H "x-user-id: $u" | sed -n 's/^lane: //p')"
    expect "$want" -H "x-user-id: $u"
done
# A config that does not pass `graylane check` never starts the gateway.
echo '{"lanes": [{"name": "gray", "matc": {}}]}' >"$dir/typo.json"
if scripts/run.sh --config "$dir/typo.json" >"$dir/typo.log" 2>&1; then
    echo "scripts/run.sh --config accepted a config with a typo" >&2; exit 1
fi
grep -q "matc" "$dir/typo.log" || { echo "no error naming the typo:" >&2; cat "$dir/typo.log" >&2; exit 1; }
echo "ok: a bad config is refused before Envoy starts"
exit 0
