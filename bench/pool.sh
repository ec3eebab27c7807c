#!/usr/bin/env bash
# Pools the rounds of several saved bench/proxy.sh outputs: medians over all
# rounds, the median of the per-round ratios, and how many rounds went
# gatehouse's way. One run of 11 rounds moves by several percent on this
# shared machine; the pooled figures move less.
#
#   for i in 1 2 3; do RUNS=11 DURATION=8s bench/proxy.sh >run$i.txt; done
#   bench/pool.sh run*.txt
set -euo pipefail
python3 - "$@" <<'PY'
import statistics as st, sys
pairs = []
for path in sys.argv[1:]:
    rounds = {}
    for line in open(path):
        f = line.split()
        if len(f) == 4 and f[0].isdigit() and f[1] in ("nginx", "gatehouse"):
            rounds.setdefault(f[0], {})[f[1]] = (float(f[2]), float(f[3]))
    pairs += [(r["gatehouse"], r["nginx"]) for r in rounds.values() if len(r) == 2]
if not pairs:
    sys.exit("no rounds found")
g_rps, n_rps = st.median(g[0] for g, _ in pairs), st.median(n[0] for _, n in pairs)
g_p99, n_p99 = st.median(g[1] for g, _ in pairs), st.median(n[1] for _, n in pairs)
print(f"{len(pairs)} rounds from {len(sys.argv) - 1} runs")
print(f"medians: requests/s gatehouse {g_rps:.0f}, nginx {n_rps:.0f} ({g_rps / n_rps:.3f}x); "
      f"p99 gatehouse {g_p99:.3f} ms, nginx {n_p99:.3f} ms ({g_p99 / n_p99:.3f}x)")
print(f"median of per-round ratios: requests/s {st.median(g[0] / n[0] for g, n in pairs):.3f}x, "
      f"p99 {st.median(g[1] / n[1] for g, n in pairs):.3f}x")
print(f"rounds with gatehouse's requests/s >= nginx's: {sum(g[0] >= n[0] for g, n in pairs)}/{len(pairs)}; "
      f"p99 <= nginx's: {sum(g[1] <= n[1] for g, n in pairs)}/{len(pairs)}")
PY
