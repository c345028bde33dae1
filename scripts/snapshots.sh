# Sourced by the setup scripts (never run): the reference snapshots in $REF, unpacked into $OUT once.
# The caller sets REF (../shared/reference or $DECLIP_REFERENCE_DIR), OUT (.dfb) and TAG (its log prefix).

snapshot() {  # the newest $REF/<name>-*.tar.gz, or nothing
    ls "$REF"/"$1"-*.tar.gz 2>/dev/null | sort | tail -n 1 || true
}

unpack() {  # unpack tarball $1 into $OUT (it holds folder $2) unless this snapshot is already there
    local tar=$1 dir=$2 stamp="$OUT/$2.snapshot"
    if [ -d "$OUT/$dir" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(basename "$tar")" ]; then
        return
    fi
    rm -rf "${OUT:?}/$dir"
    mkdir -p "$OUT"
    tar xzf "$tar" -C "$OUT"
    [ -d "$OUT/$dir" ] || { echo "[$TAG] $tar did not unpack to $dir/" >&2; exit 1; }
    basename "$tar" > "$stamp"
    echo "[$TAG] unpacked $(basename "$tar") into $OUT/$dir"
}
