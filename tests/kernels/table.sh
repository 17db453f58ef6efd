#!/usr/bin/env bash
# Prints the kernel matrix from the runs under WORK (see tests/kernels/run) and exits
# non-zero when a test failed or a guest did not finish. A test that needs a capability
# its kernel lacks is not run and is named, with what is missing: never a silent skip.
#   table.sh WORK ROW...   (ROW: "host" or a kernel version, a directory under WORK)
set -uo pipefail
work=$1; shift
bad=0
printf '%-24s %-9s %6s %6s %8s %8s  %s\n' kernel run passed failed "not run" minutes "lacks (netray features)"
for row in "$@"; do
    out=$work/$row
    kernel=$(cat "$out/kernel" 2>/dev/null || echo "$row")
    where=emulated; [ "$row" = host ] && where=native
    res=$out/results.tsv; [ -f "$res" ] || res=/dev/null
    passed=$(awk -F'\t' '$2 == "ok"' "$res" | wc -l)
    failed=$(awk -F'\t' '$2 == "FAILED" || $2 == "timeout"' "$res" | wc -l)
    notrun=$(awk -F'\t' '$2 ~ /^lacks:/' "$res" | wc -l)
    lacks=$(jq -r '[.features[] | select(.available | not) | .name] | join(", ") | if . == "" then "nothing" else . end' \
        "$out/features.json" 2>/dev/null)
    printf '%-24s %-9s %6s %6s %8s %8.1f  %s\n' "$kernel" "$where" "$passed" "$failed" "$notrun" \
        "$(awk '{ print $1 / 60 }' "$out/seconds" 2>/dev/null || echo 0)" "${lacks:-?}"
done
for row in "$@"; do
    out=$work/$row
    planned=$(wc -l < "$work/plan.tsv")
    done_=$(wc -l < "$out/results.tsv" 2>/dev/null || echo 0)
    if [ "$done_" -lt "$planned" ]; then
        echo "  $row: the run stopped after $done_ of $planned (exit $(cat "$out/rc" 2>/dev/null)); the end of $out/console.log:"
        tail -n 20 "$out/console.log" 2>/dev/null | sed 's/^/    | /'
        bad=1
    fi
    # A guest that died and was replaced (tests/kernels/run): never silent, even when the rerun passed.
    [ ! -f "$out/deaths.tsv" ] || awk -F'\t' -v row="$row" -v out="$out" '
        { printf "  %s: THE GUEST DIED (exit %s) during %s; a new guest resumed with it (console: %s/%s)\n", row, $2, $1, out, $3 }' \
        "$out/deaths.tsv"
    awk -F'\t' -v row="$row" -v logs="$out/logs" '
        $2 == "FAILED" || $2 == "timeout" { l = $1; gsub("[/ ]", "_", l); printf "  %s: %s %s (%s s): %s/%s.log\n", row, $1, $2, $3, logs, l; bad = 1 }
        $2 ~ /^lacks:/ { printf "  %s: %s NOT RUN: the kernel lacks %s\n", row, $1, substr($2, 7) }
        END { exit bad }' "$out/results.tsv" 2>/dev/null || bad=1
done
exit $bad
