"""Start-up of the command line, side by side: this checkout against an earlier tree.

    .venv/bin/python bench/startup.py [--before DIR] [--runs N] [--inventory LAB_HOSTS_INI]

``--before DIR``: another copy of the repository (e.g. ``git archive main | tar -x -C DIR``);
without it only this checkout is measured. Each figure is the median wall time of N runs,
alternating the trees, printed with the ratio after/before. Asserts nothing.

- ``inv -l``: the task list (imports every task module);
- ``inv --version``, ``hatasks --version`` and ``hatasks -l`` (the installed command;
  ``python -c`` running its entry point, as the console script does);
- ``status`` (and ``hb.status``, which needs fewer modules) up to its first ssh connect: the time from starting the process to the first
  ``socket.connect`` call (the process then exits there), on an inventory whose hosts point
  at 127.0.0.1, so no host is needed. This is the fixed cost every task pays before it can
  talk to a cluster: interpreter, imports, configuration, inventory.
- with ``--inventory`` (a running lab's, e.g. ``lab/.state/N/hosts.ini``): ``status`` end to end.

``--compile``: compile both trees' ``hatasks`` and ``lab`` to bytecode first, as ``pip install``
does for the installed command (without it, a tree whose ``inv`` writes no ``__pycache__``
compiles its modules on every run, as a checkout did before ``tasks.py`` let it cache them).

Each figure: the median and, in brackets, the fastest run (the closest to a quiet machine);
wall time first, then the CPU time of the same runs (steadier on a busy machine).
"""

import argparse
import os
import resource
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
INV = str(BIN / "inv")

# the child stops at its first socket connect and reports the wall clock
HOOK = (
    "import os, socket, sys, time\n"
    "def _first(self, *a, **k):\n"
    "    sys.stderr.write('FIRST-CONNECT %.6f\\n' % time.time()); sys.stderr.flush()\n"
    "    os._exit(0)\n"
    "socket.socket.connect = _first\n"
)


def inventory(tmp):
    """The repository's inventory with its hosts at 127.0.0.1 (ports 9, 10, ...: one address
    each) and no ssh_config/pgpass."""
    lines = []
    port = 9
    for line in (HERE / "hosts.ini").read_text().splitlines():
        if line.startswith(("ssh_config=", "pgpass=")):
            continue
        if " ansible_host=" in line:
            name, rest = line.split(" ", 1)
            rest = " ".join(w for w in rest.split() if not w.startswith("ansible_host="))
            line = f"{name} ansible_host=127.0.0.1 ansible_port={port} {rest}".rstrip()
            port += 1
        lines.append(line)
    path = pathlib.Path(tmp) / "hosts.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def wall(argv, env, cwd, connects=False, lab=None):
    if lab and "status" in argv and "--inventory" not in argv:
        env = dict(env, INVOKE_HATASKS_INVENTORY=str(lab))
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    end = time.time()
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (now.ru_utime - used.ru_utime) + (now.ru_stime - used.ru_stime)
    CPU.append(cpu)
    for line in p.stderr.splitlines():
        if line.startswith("FIRST-CONNECT "):
            return float(line.split()[1]) - start
    if connects or p.returncode != 0:
        raise RuntimeError(f"{argv}: exit {p.returncode}, no connect: {p.stderr.strip()[-300:]}")
    return end - start


#: the CPU time (user + system) of the last child run by ``wall``: on a busy machine the wall
#: time measures the other processes too, the CPU time much less so
CPU = []


def commands(root, has_program, lab=None):
    entry = f"import sys; sys.path.insert(0, {str(root)!r}); "
    cmds = {
        "inv -l": [INV, "-r", str(root), "-l"],
        "inv --version": [INV, "--version"],
        "status to its first ssh connect (inv)": [
            sys.executable, "-c", HOOK + "from invoke.main import program; program.run()",
            "-r", str(root), "status"],
    }
    cmds["hb.status to its first ssh connect (inv)"] = [
        sys.executable, "-c", HOOK + "from invoke.main import program; program.run()",
        "-r", str(root), "hb.status"]
    if lab:
        cmds["inv status, end to end (lab)"] = [INV, "-r", str(root), "status"]
    if has_program:
        cmds["hatasks --version"] = [
            sys.executable, "-c", entry + "from hatasks.program import main; main()", "--version"]
        cmds["hatasks -l"] = [
            sys.executable, "-c", entry + "from hatasks.program import main; main()", "-l"]
        cmds["status to its first ssh connect (hatasks)"] = [
            sys.executable, "-c",
            HOOK + entry + "from hatasks.program import main; main()", "status"]
        cmds["hb.status to its first ssh connect (hatasks)"] = [
            sys.executable, "-c",
            HOOK + entry + "from hatasks.program import main; main()", "hb.status"]
        if lab:
            cmds["hatasks status, end to end (lab)"] = [
                sys.executable, "-c", entry + "from hatasks.program import main; main()",
                "--inventory", str(lab), "status"]
    return cmds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=pathlib.Path, help="an earlier copy of the repository")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--inventory", type=pathlib.Path, help="a running lab's hosts.ini")
    ap.add_argument("--compile", action="store_true",
                    help="compile both trees to bytecode first (as pip install does)")
    opts = ap.parse_args()
    trees = {"after": HERE}
    if opts.before:
        trees = {"before": opts.before.resolve(), "after": HERE}
    if opts.compile:
        for root in trees.values():
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "hatasks"),
                            str(root / "lab")], check=True)
    with tempfile.TemporaryDirectory(prefix="hatasks-bench-") as tmp:
        env = dict(os.environ, INVOKE_HATASKS_INVENTORY=str(inventory(tmp)),
                   HATASKS_INVENTORY=str(pathlib.Path(tmp) / "hosts.ini"),
                   INVOKE_HATASKS_STATE_DIR=str(pathlib.Path(tmp) / "state"),
                   HATASKS_STATE_DIR=str(pathlib.Path(tmp) / "state"),
                   INVOKE_HATASKS_CONNECT_TIMEOUT="1", PYTHONDONTWRITEBYTECODE="")
        lab = opts.inventory.resolve() if opts.inventory else None
        plans = {name: commands(root, (root / "hatasks" / "program.py").exists(), lab)
                 for name, root in trees.items()}
        times = {name: {k: [] for k in plan} for name, plan in plans.items()}
        cpus = {name: {k: [] for k in plan} for name, plan in plans.items()}
        for name, plan in plans.items():  # warm the caches (pyc, page cache) once
            for label, argv in plan.items():
                wall(argv, env, tmp, "connect" in label, lab if "lab" in label else None)
        for _ in range(opts.runs):
            for name, plan in plans.items():
                for label, argv in plan.items():
                    times[name][label].append(wall(argv, env, tmp, "connect" in label,
                                                   lab if "lab" in label else None))
                    cpus[name][label].append(CPU[-1])
    labels = list(plans["after"])
    print(f"median of {opts.runs} runs, seconds (load average {os.getloadavg()[0]:.2f},"
          f" {os.cpu_count()} cpus{', trees compiled first' if opts.compile else ''})")
    print(f"{'measure':45} {'before':>16} {'after':>16} {'ratio':>11}")

    def cell(values):
        return f"{statistics.median(values):7.3f} ({min(values):.3f})" if values else " " * 7

    for figures, title in ((times, "wall time"), (cpus, "CPU time (user + system)")):
        print(f"-- {title}")
        for label in labels:
            after = figures["after"][label]
            before = figures.get("before", {}).get(label)
            ratio = (f"{statistics.median(after) / statistics.median(before):5.2f}"
                     f" ({min(after) / min(before):.2f})") if before else "-"
            print(f"{label:45} {cell(before):>16} {cell(after):>16} {ratio:>11}")


if __name__ == "__main__":
    main()
