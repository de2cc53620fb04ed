"""Runs every speed benchmark of issue 6 and writes `benchmarks/results/speed.md`.

    python benchmarks/speed.py                       # all (about 20 minutes on 2 cores; run on a quiet machine)
    python benchmarks/speed.py --only head_overhead  # one of them; the others' sections are kept

Each section of speed.md holds the exact command, the machine, the full output of
the script and its figures (the `name: value` lines it ends with). Benchmarks:
  monai_comparison     MIMS vs MONAI MILModel, training step and inference per bag
  head_overhead        MSConv head and image pyramid cost over MI-Pre (paper section 3.3)
  pipeline_throughput  data pipeline vs model training rate, per file format
  export_latency       TFLite vs SavedModel inference
Ends with every figure as `name: value`.
"""

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = {
    "monai_comparison": ["--monai-settings", "fp32,channels_last,bf16,channels_last_compile"],
    "head_overhead": [],
    "pipeline_throughput": [],
    "export_latency": [],
}
FIGURE = re.compile(r"^([a-z0-9_]+): (-?[0-9.]+)$")


def _sections(text):
    """{name: section text} of an existing speed.md."""
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {part.split("\n", 1)[0].strip(): "## " + part.rstrip() + "\n" for part in parts}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these (default: all)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "speed.md"))
    args = parser.parse_args()

    sections = _sections(open(args.out, encoding="utf-8").read()) if os.path.isfile(args.out) else {}
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.isfile("/proc/cpuinfo") else platform.processor()
    machine = f"{cpu}, {os.cpu_count()} cores, {platform.platform()}"
    for name in args.only or BENCHMARKS:
        command = ["python", f"benchmarks/{name}.py", *BENCHMARKS[name]]
        print(f"[speed] {' '.join(command)}", file=sys.stderr, flush=True)
        started = datetime.datetime.now(datetime.timezone.utc)
        completed = subprocess.run([sys.executable, *command[1:]], stdout=subprocess.PIPE, text=True,
                                   cwd=os.path.dirname(HERE))
        minutes = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60
        output = completed.stdout.rstrip()
        print(output, flush=True)
        figures = [m.groups() for m in map(FIGURE.match, output.splitlines()) if m]
        if completed.returncode != 0:
            figures = [("failed", f"exit status {completed.returncode}")]
        sections[name] = "\n".join([
            f"## {name}", "",
            f"- command: `{' '.join(command)}`",
            f"- run: {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min, {machine}",
            "", "| figure | value |", "|---|---|", *[f"| `{n}` | {v} |" for n, v in figures],
            "", "```", output, "```", "",
        ])
    text = ["# Speed figures", "",
            "Regenerate all: `python benchmarks/speed.py` (one section: `--only NAME`), on a quiet machine: every "
            "ratio is measured side by side in one run, but other work on the 2 cores still skews it.", ""]
    text += [sections[name] for name in BENCHMARKS if name in sections]
    with open(f"{args.out}.tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(text))
    os.replace(f"{args.out}.tmp", args.out)
    for name in BENCHMARKS:
        for line in sections.get(name, "").splitlines():
            match = re.match(r"^\| `([a-z0-9_]+)` \| (.+) \|$", line)
            if match:
                print(f"{match.group(1)}: {match.group(2)}")


if __name__ == "__main__":
    main()
