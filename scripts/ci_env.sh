# Sourced by the scripts (never run): one rule for "this is CI", shared with tests/dfb_support.py's in_ci().
# CI set to 1, true or yes (any case) is CI: there a missing snapshot, environment or browser fails instead
# of being skipped. .ci/run sets CI=true itself, so the checks run whatever the runner provides.
in_ci() {
    case "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
        1 | true | yes) return 0 ;;
        *) return 1 ;;
    esac
}
