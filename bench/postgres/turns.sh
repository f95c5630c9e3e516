# Sourced by the scripts beside it: measure a "before" and an "after" in
# turns, and sum them up.
#
# in_turns ROUNDS NAME calls the caller's `measure before|after`, which
# prints its figure first and may add `key=value`s after it. Each round
# turns the order, so a machine growing slower or faster does not favour
# one side. It prints every measurement and leaves the medians in
# TURNS_BEFORE and TURNS_AFTER.

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

in_turns() {
    local rounds=$1 name=$2 r side order figure rest
    local -a before=() after=()
    for r in $(seq "$rounds"); do
        order="before after"; [ $((r % 2)) -eq 0 ] && order="after before"
        for side in $order; do
            read -r figure rest < <(measure "$side")
            echo "round=$r schema=$side $name=$figure${rest:+ $rest}"
            if [ "$side" = before ]; then before+=("$figure"); else after+=("$figure"); fi
        done
    done
    TURNS_BEFORE=$(median "${before[@]}")
    TURNS_AFTER=$(median "${after[@]}")
}

# after / before, to `digits` decimals.
turns_ratio() { awk -v a="$TURNS_AFTER" -v b="$TURNS_BEFORE" -v d="${1:-2}" 'BEGIN { printf "%.*f", d, a / b }'; }
