# Sourced by train.sh and test.sh (never run): ENGINE=deepfakebench, `declip dfb` on the checkout at
# $DEEPFAKEBENCH_ROOT (docs/deepfakebench.md).
#   run_dfb MODE SCRIPT_ARGS... -- EXTRA_ARGS...
# SCRIPT_ARGS (--detector_path, --train_dataset, ...) go to the checkout's train.py / test.py after `--`.
# Of EXTRA_ARGS, the options of `declip dfb` itself go before it (--cpu, --opt KEY=VALUE, --results_dir DIR,
# --python EXE, --stub_datasets, --no-localization, --lmdb, --no-lmdb; `--device cpu` means --cpu), the rest
# to the script. A bundled detector name becomes a YAML the checkout reads; our datasets among the script's
# (Dolos, AutoSplice, folder and demo sets) are exported into $EXPORT_DIR (default: exports) unless they are
# there already (declip dfb --export); test runs in the CPU mode when the checkout's interpreter sees no GPU
# and writes its results under $RESULTS_DIR (default: logs/deepfakebench; DeepfakeBench's test.py writes none).
run_dfb() {
    local mode=$1 script=() dfb=() results=0
    shift
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do script+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --cpu | --stub_datasets | --stub-datasets | --no-localization | --lmdb | --no-lmdb) dfb+=("$1") ;;
            --results_dir | --results-dir) dfb+=("$1" "${2:?$1 needs a value}"); results=1; shift ;;
            --results_dir=* | --results-dir=*) dfb+=("$1"); results=1 ;;
            --opt | --python) dfb+=("$1" "${2:?$1 needs a value}"); shift ;;
            --opt=* | --python=*) dfb+=("$1") ;;
            --device) if [ "${2:-}" = cpu ]; then dfb+=(--cpu); shift; else script+=("$1"); fi ;;
            *) script+=("$1") ;;
        esac
        shift
    done
    if [ "$mode" = test ]; then
        dfb+=(--cpu_if_no_cuda)
        [ "$results" = 1 ] || dfb+=(--results_dir "${RESULTS_DIR:-logs/deepfakebench}")
    fi
    exec "$DECLIP" dfb --bench_root "${DEEPFAKEBENCH_ROOT:?set DEEPFAKEBENCH_ROOT to your DeepfakeBench checkout}" \
        --data "${EXPORT_DIR:-exports}" --export --data_root "$DATA_ROOT" "${dfb[@]}" "$mode" -- "${script[@]}"
}
