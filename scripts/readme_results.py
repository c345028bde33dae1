"""Put a demo run's results.md and summary.png (written by scripts/demo.sh) into the README and docs/.

    python scripts/readme_results.py logs/demo/results.md

README.md quotes docs/demo_results.md verbatim between the two marker lines below, and shows
docs/demo_summary.png, the summary.png beside results.md (`declip report --summary_png`);
tests/test_readme_results.py checks that they agree. Run by `UPDATE_README=1 bash scripts/demo.sh`, so
regenerating the README's figures and its picture after a change is one command.
"""
import os
import sys

BEGIN = "<!-- demo-results: begin (written by scripts/readme_results.py from a demo.sh run; do not edit) -->"
END = "<!-- demo-results: end -->"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUMMARY_PNG = "summary.png"  # beside results.md (scripts/demo.sh)
PICTURE = os.path.join("docs", "demo_summary.png")  # what README.md shows


def replace_block(readme, results):
    """``readme`` with the text between BEGIN and END replaced by ``results``."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise ValueError("README.md must hold the demo-results begin and end markers once each, in that order")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{results.strip()}\n{END}{tail}"


def main(argv):
    if len(argv) != 1:
        print("usage: python scripts/readme_results.py RESULTS_MD", file=sys.stderr)
        return 2
    try:
        with open(argv[0], encoding="utf-8") as f:
            results = f.read()
    except OSError as exc:
        print(f"error: {argv[0]}: {exc.strerror}; run `bash scripts/demo.sh` first (it writes logs/demo/results.md)",
              file=sys.stderr)
        return 2
    png_path = os.path.join(os.path.dirname(os.path.abspath(argv[0])), SUMMARY_PNG)
    try:
        with open(png_path, "rb") as f:
            png = f.read()
    except OSError as exc:
        print(f"error: {png_path}: {exc.strerror}; scripts/demo.sh writes it beside results.md "
              f"(declip report --summary_png)", file=sys.stderr)
        return 2
    readme_path = os.path.join(ROOT, "README.md")
    with open(readme_path, encoding="utf-8") as f:
        readme = f.read()
    try:
        new = replace_block(readme, results)
    except ValueError as exc:
        print(f"error: {readme_path}: {exc}", file=sys.stderr)
        return 2
    for path, data in ((os.path.join(ROOT, PICTURE), png),
                       (os.path.join(ROOT, "docs", "demo_results.md"), (results.strip() + "\n").encode("utf-8")),
                       (readme_path, new.encode("utf-8"))):
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    print(f"README.md and docs/demo_results.md now quote {argv[0]}; {PICTURE} is {png_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
