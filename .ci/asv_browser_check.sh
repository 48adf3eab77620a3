#!/usr/bin/env bash
# The asv dashboard, end to end, as a reader gets it: a quick asv run that saves its results
# (a small cross-section of the suite: one benchmark of each kind), asv publish plus the
# offline vendoring step, then Debian's headless Chromium loads the front page and one graph page from a loopback-only server with
# every other host unresolvable. Fails when a benchmark or its setup fails, when the page shows
# asv's "external dependencies failed to load" / "continental origin of swallow" error, or when
# the graph is not drawn. Screenshots go to .asv/browser-check/.
# Run from an environment with the project and asv installed: pip install -e ".[bench]".
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=.asv/browser-check
rm -rf "$OUT" && mkdir -p "$OUT"

# asv's configuration with the results and the site in $OUT, and HEAD as the branch: asv
# publish drops commits outside the configured branches, and a check may run on any branch
# or a detached HEAD.
CONF="$OUT/asv.conf.json"
python - "$CONF" "$OUT" <<'EOF'
import json, os, sys
from asv import util
conf = util.load_json("asv.conf.json", js_comments=True)
root, out = os.getcwd(), os.path.abspath(sys.argv[2])
conf.update(repo=root, branches=["HEAD"],
            benchmark_dir=os.path.join(root, conf["benchmark_dir"]),
            env_dir=os.path.join(root, conf["env_dir"]),
            results_dir=os.path.join(out, "results"), html_dir=os.path.join(out, "html"))
with open(sys.argv[1], "w") as f:
    json.dump(conf, f, indent=1)
EOF

# 1. A quick run (each benchmark once) that saves its results under the checked-out commit.
# --set-commit-hash is what makes asv save results from an existing environment.
asv machine --yes >/dev/null
asv run --config "$CONF" --quick --python=same --show-stderr --set-commit-hash "$(git rev-parse HEAD)" \
    --bench "bench_kernels\.Conv\.time_forward\('simple', 'float32', " \
    --bench "bench_kernels\.UpdateAdam\.time_update\('SimpleConvNet', 'float32', " \
    --bench "bench_training\.TwoLayerNetSGD\." \
    --bench "bench_training\.StepMemory\.peakmem_step\(100, " \
    --bench "bench_training\.Slowdown\.track_step\('SimpleConvNet', " \
    --bench "bench_scripts\."

# 2. Publish, then vendor the scripts the page would fetch from CDNs (npm packs them).
if ! command -v npm >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
fi
python benchmarks/publish_offline.py --config "$CONF" --html-dir "$OUT/html"

# 3. Headless Chromium from Debian's package.
if ! command -v chromium >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
PORT=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python -m http.server --bind 127.0.0.1 --directory "$OUT/html" "$PORT" >"$OUT/server.log" 2>&1 &
SERVER=$!
PROFILE=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$PROFILE"' EXIT
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 50); do
    python -c "import urllib.request; urllib.request.urlopen('$BASE/index.json', timeout=1)" \
        2>/dev/null && break
    sleep 0.2
done

# Every host but the loopback server resolves to nothing, so a CDN load cannot succeed.
browse() {  # browse URL ARGS...: run Chromium on one page with the given output option
    local url=$1; shift
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$PROFILE" --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
        --window-size=1280,900 --virtual-time-budget=15000 "$@" "$url" 2>>"$OUT/chromium.log"
}

FRONT="$BASE/index.html"
GRAPH="$BASE/index.html#bench_training.TwoLayerNetSGD.time_step"
browse "$FRONT" --dump-dom >"$OUT/front.html"
browse "$GRAPH" --dump-dom >"$OUT/graph.html"
browse "$FRONT" --screenshot="$OUT/front.png" >/dev/null
browse "$GRAPH" --screenshot="$OUT/graph.png" >/dev/null

# 4. What a reader would see.
python .ci/asv_browser_verdict.py "$OUT"
