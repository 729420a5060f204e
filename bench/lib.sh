# Shared by the benchmark scripts (sourced, POSIX sh): builds embargo and
# sets BIN to the binary. EMBARGO_BIN names one already built (bench/run
# sets it); otherwise PROFILE (debug or release) picks the build, in
# CARGO_TARGET_DIR when that is set.
#
#   ROOT=…; . "$ROOT/bench/lib.sh"; embargo_bin
embargo_bin() {
    PROFILE=${PROFILE:-debug}
    if [ -n "${EMBARGO_BIN:-}" ]; then
        BIN=$EMBARGO_BIN
        return
    fi
    if [ "$PROFILE" = release ]; then
        cargo build --release --quiet --bin embargo --manifest-path "$ROOT/Cargo.toml"
    else
        cargo build --quiet --bin embargo --manifest-path "$ROOT/Cargo.toml"
    fi
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/embargo"
}
