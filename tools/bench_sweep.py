"""Benchmark: sweeps: trials per hour with 1, 2 and 4 local workers, coordination cost per trial, driver overhead.

What coordinating the workers through the sweep folder costs each trial, what local workers buy on this machine,
and what the sweep driver adds to each trial.

Parts (`--part`, repeatable; default: coordination, then workers):

- coordination: in this process, no training. A sweep folder whose journal holds K finished trials (`--finished`,
  default 100 and 1000; random points written through the journal, as a sweep's workers write them), then
  `--repeats` rounds of what one trial costs its worker, with the default algorithm (TPE, `startup_trials` 20):
  `next_trial` (take the sweep's short lock, read the journal, build hyperopt's Trials, TPE's suggestion, write the
  record, claim it) and `record_result` (take the lock, read the journal, rewrite trials.pickle, results.csv and
  sweep.json). Both hold the short lock nearly all their time: one worker's ask or tell waits for another's, so
  their sum also bounds the trials per hour of the whole sweep, every node together. The plot
  (loss_vs_hparams.png) is redrawn after the lock is released, when the last one (any worker's) is 10 s old:
  measured apart, at K rows, and counted in the worst case (a redraw at every result).
  Reported per trial: median and p90 in ms (wall; the CPU apart: most of the rest is fsync), the share of a 60-s
  trial (target <= 1 % at 1000 trials), and the ceiling the lock puts on the sweep (3600 s / lock held). One
  process, so no waiting on the lock is counted: the workers part has real contention.
- workers: real `experiments-manager sweep -u SETTINGS --max-evals M --workers W --seed S --hparam nbEpoch=E` runs
  on the regression example, in a temporary copy of examples/ whose settings file has `early_stopping_patience =
  1000` appended (every trial trains E epochs: fixed length). The same seed gives every W the same points (TPE's
  first 20 trials are random, seeded by trial id). W = 1, 2, 4 side by side over `--rounds` rounds, the order
  alternating (1 2 4, 4 2 1, ...) so that the machine's drift hits each W alike. Per W: median wall, trials per
  hour, speed-up vs W=1, and the CPU time of the whole process tree (the sweep process and every trial process
  it waited for: `getrusage(RUSAGE_CHILDREN)` deltas), and the CPU other processes used meanwhile (/proc/stat: a
  sweep's share of a contended CPU grows with its processes). Each run is checked: exit code 0, sweep.json finished
  with M trials, no claim or lock file left, no process left in the work folder; warning and error lines of the
  sweeps' output are listed.
- overhead: a sequential sweep of N trials on the regression example, then, side by side,
  `experiments-manager train` with each trial's hparams. Per-trial overhead = median time from one trial's start
  to the next one's - the median `train` wall time. It covers the trial process, the suggestion, saving the
  Trials, results.csv, the plot and sweep.json after each trial. Then the same sweep (same seed, so the same
  points) with `--parallelism 2` (Spark starting 2 worker processes, issue 70) and with `--workers 2` (2 workers in
  the sweep's own process, no Spark), alternating over `--rounds`: speed-up = sequential sweep wall / parallel
  sweep wall, both end to end (Spark's includes starting Spark and its workers), and without each driver's
  start-up; Spark's launcher against local workers, side by side.

- scheduler: the same seeded points (`--algo rand --seed S`, default 12 trials x 9 epochs, 2 workers) swept with
  and without `--scheduler asha` (eta 3: rungs of 1, 3 and 9 epochs), side by side, the order alternating over
  `--rounds`: epochs trained (every trial's history.csv), wall, CPU of the process tree, device-hours (sweep.json)
  and the best value found. Target: ASHA trains at most 40 % of the epochs for a best value within 5 %.

- memory: a real `experiments-manager sweep -u SETTINGS --max-evals N --workers 1 --seed S --hparam nbEpoch=E`
  (default 50 trials x 1 epoch, default algo) in a temporary copy of examples/ as the workers part makes, and beside
  it, every 0.2 s, the warm trial host(s) (`trial_host.py`: the descendants of the sweep process whose command line
  runs `experiments_manager.sweeps.trial_host`) and the sweep process: VmRSS and Threads from /proc/<pid>/status.
  Each sample is attributed to the trials ended so far (records `trials/trial-*.json` whose status is finished or
  failed): the window of trial k runs from trial k's end to trial k+1's (the next trial trains in it). The host
  "after trial k" is the minimum over that window (its resting size between trials, the next trial's own growth
  left out), beside the maximum (the next trial's peak). Reported: RSS and threads after trials 1, 5, 10, 20, 30,
  40 and N, the growth from trial 5 to N (MiB, and a least-squares slope over trials 5..N, per trial), the host
  pids and the trials each served (from the records: a running trial's record names its host's pid), why a host
  was replaced (the trial before failed, `MAX_TRIALS_PER_HOST`, `MAX_RSS_GROWTH_BYTES`, else unknown), the
  sweep's wall time and trials per minute. Checked: exit code 0, sweep.json finished with N trials, no process
  left in the work folder.

The coordination, workers, scheduler and memory parts end with markdown rows for BENCHMARKS.md, headed by the
command line.

Usage (from the repository root):

    .venv/bin/python tools/bench_sweep.py [--part coordination|workers|overhead|scheduler|all ...]
        [--finished 100 1000] [--repeats 20]                           # coordination
        [--trials 8] [--epochs 2] [--workers 1 2 4] [--rounds 2]       # workers (overhead: --trials 4 --epochs 3)
        [--trials 50] [--epochs 1]                                     # memory
        [--samples 2000] [--seed 11]
"""

import argparse
import collections
import contextlib
import csv
import datetime
import json
import math
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = "examples/regression/mysettings_curve_fitting.py"
WORKING_FOLDER = "experiments/examples/curve_fitting"
PARTS = ("coordination", "workers", "overhead", "scheduler", "memory")
REFERENCE_TRIAL_SECONDS = 60.0
MONITOR = "val_loss"


def command(*arguments):
    return [sys.executable, "-m", "experiments_manager", *arguments]


def command_line():
    """This run's command line, as typed from the repository root (the script run: this one, or a tool importing
    this function)."""
    python = Path(sys.executable)
    python = os.path.relpath(python, REPO) if REPO in python.absolute().parents else str(python)
    return shlex.join([python, os.path.relpath(Path(sys.argv[0]).resolve(), REPO), *sys.argv[1:]])


def machine_line():
    """Today, the cores this process may use and the load average."""
    cores = len(os.sched_getaffinity(0))
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{datetime.date.today()}, {cores} cores, load average {load}"


def bench_workdir(root, samples):
    """A copy of examples/ whose regression settings train `samples` samples and never stop early."""
    shutil.copytree(REPO / "examples", root / "examples")
    path = root / SETTINGS
    path.write_text(path.read_text() + f"\nnb_train_samples = {samples}\nearly_stopping_patience = 1000\n")
    return root


def median_p90(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, math.ceil(0.9 * len(values)) - 1)]
    return statistics.median(values), p90


# --- coordination -------------------------------------------------------------------------------------------------

def regression_space():
    """The regression example's hyperopt_space (not imported: its settings import TensorFlow)."""
    from hyperopt import hp

    from experiments_manager.sweeps.space import SearchSpace

    return SearchSpace({"learningRate": hp.loguniform("learningRate", -7, -2),
                        "hiddenNeurons": hp.quniform("hiddenNeurons", 4, 64, 4)},
                       {"hiddenNeurons": 32, "learningRate": 0.01, "nbEpoch": 40}, "mysettings_curve_fitting.py")


def made_up_loss(hparams):
    """A validation loss with a minimum near learningRate 0.005 and 32 neurons (TPE gets something to model)."""
    return (math.log(hparams["learningRate"]) + 5.3) ** 2 + (hparams["hiddenNeurons"] - 32) ** 2 / 200


def finished_fields(hparams, number):
    loss = made_up_loss(hparams)
    return dict(status="finished", best_value=loss, best_epoch=2, loss=loss, seconds=REFERENCE_TRIAL_SECONDS,
                experiment=f"/nowhere/experiments/trial-{number}", log=f"/nowhere/trials/trial-{number:04d}.log")


def filled_sweep(root, finished, seed):
    """A sweep folder whose journal holds `finished` finished trials (random points); returns seconds taken."""
    from experiments_manager.run.experiment import now
    from experiments_manager.sweeps.folder import SweepFolder
    from experiments_manager.sweeps.journal import TrialEntry
    from experiments_manager.sweeps.store import SweepStore, worker_identity
    from experiments_manager.sweeps.sampler import SeededSuggestions

    start = time.perf_counter()
    root.mkdir(parents=True)
    sweep = SweepFolder(root)
    sweep.write_spec({"status": "running", "max_evals": finished, "space": {}, "trials_done": 0, "algo": "tpe",
                      "seed": seed, "startup_trials": 20})
    filler = SweepStore(sweep, regression_space(), SeededSuggestions("rand", seed), finished, MONITOR)
    worker = worker_identity()
    for tid in range(finished):
        hparams, vals = filler.sampler.suggest(tid, [])
        entry = TrialEntry(hparams=hparams, tid=tid, vals=vals, worker=worker, started=now(), ended=now(),
                           **finished_fields(hparams, tid + 1))
        if filler.journal.create(entry) is None:
            raise SystemExit(f"{root}: trial {tid + 1} written twice")
    return time.perf_counter() - start


@contextlib.contextmanager
def timing(spent, patches):
    """Wraps each (owner, attribute, name) so that its calls add their seconds to `spent[name]`; undone after."""
    originals = []
    for owner, attribute, name in patches:
        original = getattr(owner, attribute)

        def timed(*arguments, _original=original, _name=name, **keywords):
            start = time.perf_counter()
            try:
                return _original(*arguments, **keywords)
            finally:
                spent[_name] += time.perf_counter() - start

        originals.append((owner, attribute, original, attribute in vars(owner)))
        setattr(owner, attribute, timed)
    try:
        yield spent
    finally:
        for owner, attribute, original, own in reversed(originals):
            if own:
                setattr(owner, attribute, original)
            else:
                delattr(owner, attribute)


def coordination_at(root, finished, repeats, seed):
    """Per-round seconds of the coordination steps over a journal of `finished` trials, and the plot's."""
    from experiments_manager.sweeps import store as store_module
    from experiments_manager.sweeps.folder import SweepFolder
    from experiments_manager.sweeps.results import plot_loss_vs_hparams
    from experiments_manager.sweeps.steps import Assignment
    from experiments_manager.sweeps.store import SweepStore, worker_identity
    from experiments_manager.sweeps.sampler import SeededSuggestions

    fill = filled_sweep(root, finished, seed)
    space = regression_space()
    total = finished + repeats + 1
    SweepFolder(root).update_spec(max_evals=total)  # the total every worker follows is sweep.json's
    store = SweepStore(SweepFolder(root), space, SeededSuggestions("tpe", seed, startup_trials=20), total, MONITOR)
    worker = worker_identity()
    spent = collections.Counter()
    patches = [(store, "locked", "lock taken"), (store.journal, "numbered", "journal read"),
               (store_module, "hyperopt_trials", "Trials built"), (store, "algo", "TPE"),
               (store, "suggest", "suggest"), (store_module, "trial_rows", "rows"),
               (store_module, "save_trials", "trials.pickle"), (store_module, "write_results_csv", "results.csv"),
               (store.sweep, "update_spec", "sweep.json")]
    rounds = []
    interval = store_module.PLOT_INTERVAL_SECONDS
    store_module.PLOT_INTERVAL_SECONDS = float("inf")  # no redraw inside record_result: measured apart below
    try:
        with timing(spent, patches):
            for index in range(repeats + 1):  # the first round warms up (imports, hyperopt's Domain): not counted
                spent.clear()
                cpu, start = time.process_time(), time.perf_counter()
                step = store.next_trial(worker)
                asked, asked_cpu = time.perf_counter(), time.process_time()
                if not isinstance(step, Assignment):
                    raise SystemExit(f"{root}: no trial assigned: {step}")
                parts = dict(spent)
                step.record.update(**finished_fields(step.entry.hparams, step.entry.number))  # the trial's own write
                spent.clear()
                told_cpu, told_start = time.process_time(), time.perf_counter()
                store.record_result(step)
                told, told_end_cpu = time.perf_counter(), time.process_time()
                if index:
                    rounds.append({"next_trial": asked - start, "record_result": told - told_start,
                                   "cpu": (asked_cpu - cpu) + (told_end_cpu - told_cpu), "ask": parts,
                                   "tell": dict(spent)})
    finally:
        store_module.PLOT_INTERVAL_SECONDS = interval
    rows, _ = store.record_rows()
    plots, plot_cpus, imported = [], [], "matplotlib" in sys.modules
    for _ in range(4):  # the first draw (in a process: matplotlib's import) is not counted
        cpu, start = time.process_time(), time.perf_counter()
        plot_loss_vs_hparams(rows, space, MONITOR, store.sweep.plot_png)
        plots.append(time.perf_counter() - start)
        plot_cpus.append(time.process_time() - cpu)
    return {"finished": finished, "fill": fill, "rounds": rounds, "rows": len(rows), "first_plot": plots[0],
            "plot": statistics.median(plots[1:]), "plot_cpu": statistics.median(plot_cpus[1:]),
            "first_plot_imports": not imported}


def coordination_part(arguments):
    print(f"\n## coordination: {', '.join(map(str, arguments.finished))} finished trials, {arguments.repeats} "
          f"rounds each, TPE (startup_trials 20), seed {arguments.seed} ({machine_line()})", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_sweep_coordination_") as root:
        for finished in arguments.finished:
            result = coordination_at(Path(root) / f"sweep-{finished}", finished, arguments.repeats, arguments.seed)
            results.append(result)
            rounds = result["rounds"]
            print(f"\n{finished} finished trials (journal written in {result['fill']:.1f} s), median ms of "
                  f"{len(rounds)} rounds:")
            for step, total_name, nested in (("ask", "next_trial", {"TPE", "Trials built"}),
                                             ("tell", "record_result", set())):
                names = sorted({name for one in rounds for name in one[step]})
                parts = {name: statistics.median(one[step].get(name, 0.0) for one in rounds) * 1e3 for name in names}
                total = statistics.median(one[total_name] for one in rounds) * 1e3
                rest = statistics.median(one[total_name] - sum(value for name, value in one[step].items()
                                                               if name not in nested) for one in rounds) * 1e3
                listed = ", ".join(f"{name} {value:.1f}" for name, value in parts.items())
                print(f"  {total_name:13} {total:7.1f}: {listed}; the rest (claim, record, lock release) {rest:.1f}"
                      + (" (suggest = Trials built + TPE)" if nested else ""))
            first = "the first in this process, matplotlib's import included" if result["first_plot_imports"] \
                else "the first of these rows"
            print(f"  plot redraw at {result['rows']} rows: {result['plot'] * 1e3:.0f} ms, median of 3 ({first}: "
                  f"{result['first_plot'] * 1e3:.0f} ms)")
    header = ["finished trials", "TPE suggest", "`next_trial`", "`record_result`", "lock held per trial",
              "of which CPU", "share of a 60-s trial", "plot redraw (CPU)", "share with the plot",
              "lock-bound ceiling, trials/hour"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        rounds = result["rounds"]
        tpe = median_p90([one["ask"].get("TPE", 0.0) for one in rounds])
        ask = median_p90([one["next_trial"] for one in rounds])
        tell = median_p90([one["record_result"] for one in rounds])
        held = median_p90([one["next_trial"] + one["record_result"] for one in rounds])
        cpu = statistics.median(one["cpu"] for one in rounds)
        share = held[0] / REFERENCE_TRIAL_SECONDS
        with_plot = (held[0] + result["plot"]) / REFERENCE_TRIAL_SECONDS
        cells = [str(result["finished"]), *(f"{m * 1e3:.1f} / {p * 1e3:.1f}" for m, p in (tpe, ask, tell, held)),
                 f"{cpu * 1e3:.1f}", f"{share:.2%}", f"{result['plot'] * 1e3:.0f} ({result['plot_cpu'] * 1e3:.0f})",
                 f"{with_plot:.2%}", f"{3600 / held[0]:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    print(f"\nCommand: `{command_line()}` ({machine_line()}). Milliseconds per trial, median / p90 of "
          f"{arguments.repeats} rounds (CPU: median); lock held = `next_trial` + `record_result`; share = lock held / "
          f"{REFERENCE_TRIAL_SECONDS:.0f} s (target <= 1 % at 1000 trials). The plot is redrawn outside the lock, when "
          "the last one (any worker's) is 10 s old: 'share with the plot' is the worst case, a redraw at every "
          "result (a sweep finishing at most 6 trials a minute). Ceiling: the trials per hour of the whole sweep, "
          "every worker together, when the short lock is never free (3600 s / lock held).\n")
    print("\n".join(lines), flush=True)
    return lines


# --- workers ------------------------------------------------------------------------------------------------------

def processes_in(folder):
    """Pids of the processes (other than this one) whose current directory is in `folder`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            pids.append(int(entry.name))
    return pids


def machine_busy_seconds():
    """CPU seconds the whole machine spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def worker_sweep(workdir, trials, epochs, seed, workers, log_path):
    """One `sweep --workers W` run, timed, and checked; a dict of what it measured."""
    working_folder = workdir / WORKING_FOLDER
    before = set(working_folder.glob("*_sweep_*")) if working_folder.is_dir() else set()
    arguments = ["sweep", "-u", SETTINGS, "--max-evals", str(trials), "--workers", str(workers), "--seed", str(seed),
                 "--hparam", f"nbEpoch={epochs}"]
    usage, machine = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy_seconds()
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command(*arguments), cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        folder, first = None, None
        while process.poll() is None:
            if folder is None:
                new = set(working_folder.glob("*_sweep_*")) - before if working_folder.is_dir() else set()
                folder = next(iter(new), None)
            if folder is not None and first is None and next((folder / "trials").glob("*.log"), None):
                first = time.perf_counter() - start
            time.sleep(0.05)
    wall = time.perf_counter() - start
    after, machine = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy_seconds() - machine
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"sweep --workers {workers} failed with exit code {process.returncode}:\n" + "\n".join(tail))
    if folder is None:
        folder = next(iter(set(working_folder.glob("*_sweep_*")) - before))
    problems = []
    left = processes_in(workdir)
    if left:
        time.sleep(2)
        left = processes_in(workdir)
        if left:
            problems.append(f"processes left in the work folder 2 s after the sweep exited: {left}")
    spec = json.loads((folder / "sweep.json").read_text())
    if spec.get("status") != "finished" or spec.get("trials_done") != trials:
        problems.append(f"sweep.json: status {spec.get('status')}, trials_done {spec.get('trials_done')}")
    locks = [path.name for path in folder.rglob("*.lock")] + [path.name for path in (folder / "trials").glob(".*")]
    if locks:
        problems.append(f"left in the sweep folder: {locks}")
    with open(folder / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if len(rows) != trials or any(row["status"] != "finished" for row in rows):
        problems.append(f"results.csv: {[(row['trial'], row['status']) for row in rows]}")
    seconds = [float(row["seconds"]) for row in rows if row.get("seconds")]
    points = sorted((row["learningRate"], row["hiddenNeurons"]) for row in rows)
    return {"wall": wall, "cpu": cpu, "others": max(0.0, machine - cpu) / wall, "first": first if first is not None else float("nan"), "seconds": seconds,
            "points": points, "problems": problems, "folder": folder}


def log_lines_worth_a_look(logs):
    """Distinct warning/error lines of the sweeps' output (numbers and paths blurred), with how many runs had each."""
    pattern = re.compile(r"warning|error|traceback|exception|taken over|interrupted", re.IGNORECASE)
    seen = collections.Counter()
    for log in logs:
        lines = set()
        for line in log.read_text(errors="replace").splitlines():
            if pattern.search(line):
                lines.add(re.sub(r"\d+(\.\d+)?", "N", re.sub(r"(/[\w.+-]+)+", "PATH", line.strip()))[:160])
        seen.update(lines)
    return seen


def workers_part(arguments):
    trials = arguments.trials or 8
    epochs = arguments.epochs or 2
    cores = len(os.sched_getaffinity(0))
    print(f"\n## workers: {trials} trials x {epochs} epochs, {arguments.samples} samples, seed {arguments.seed}, "
          f"workers {' '.join(map(str, arguments.workers))}, {arguments.rounds} rounds ({machine_line()})", flush=True)
    runs = collections.defaultdict(list)
    logs = []
    with tempfile.TemporaryDirectory(prefix="bench_sweep_workers_") as root:
        workdir = bench_workdir(Path(root), arguments.samples)
        for round_index in range(arguments.rounds):
            order = arguments.workers if round_index % 2 == 0 else list(reversed(arguments.workers))
            for workers in order:
                log_path = Path(root) / f"sweep-w{workers}-r{round_index + 1}.log"
                run = worker_sweep(workdir, trials, epochs, arguments.seed, workers, log_path)
                logs.append(log_path)
                runs[workers].append(run)
                print(f"round {round_index + 1}, {workers} worker{'s' * (workers > 1)}: wall {run['wall']:6.1f} s, "
                      f"CPU {run['cpu']:6.1f} s, first trial after {run['first']:4.1f} s, trial process median "
                      f"{statistics.median(run['seconds']):5.1f} s, other processes {run['others']:.2f} cores"
                      + "".join(f"\n  PROBLEM: {problem}" for problem in run["problems"]), flush=True)
        worth = log_lines_worth_a_look(logs)
    points = {tuple(run["points"]) for group in runs.values() for run in group}
    walls = {workers: statistics.median(run["wall"] for run in group) for workers, group in runs.items()}
    base = walls[arguments.workers[0]]
    cpu_all = statistics.median(run["cpu"] for group in runs.values() for run in group)
    others = statistics.median(run["others"] for group in runs.values() for run in group)
    header = ["workers", f"wall, median of {arguments.rounds} (s)", "trials/hour", f"speed-up vs {arguments.workers[0]}",
              "trials/hour from the first trial's start", "CPU of the process tree, median (s)", "CPU per trial (s)",
              "cores busy (CPU / wall)", "trial process, median (s)", "trials at once (Σ trial s / wall)",
              "other processes' CPU (cores)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for workers in arguments.workers:
        group = runs[workers]
        wall = walls[workers]
        first = statistics.median(run["first"] for run in group)
        cpu = statistics.median(run["cpu"] for run in group)
        trial = statistics.median(second for run in group for second in run["seconds"])
        at_once = statistics.median(sum(run["seconds"]) / run["wall"] for run in group)
        each = ", ".join(f"{run['wall']:.1f}" for run in group)
        cells = [str(workers), f"{wall:.1f} ({each})",
                 f"{trials * 3600 / wall:.0f}", f"{base / wall:.2f}x", f"{trials * 3600 / (wall - first):.0f}",
                 f"{cpu:.0f}", f"{cpu / trials:.1f}", f"{cpu / wall:.2f}", f"{trial:.1f}", f"{at_once:.2f}",
                 f"{statistics.median(run['others'] for run in group):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    sweep_command = (f"experiments-manager sweep -u {SETTINGS} --max-evals {trials} --workers W --seed {arguments.seed} "
                     f"--hparam nbEpoch={epochs}")
    print(f"\nCommand: `{command_line()}` ({machine_line()}): `{sweep_command}` for W = "
          f"{', '.join(map(str, arguments.workers))}, side by side, the order alternating, in a copy of examples/ "
          f"with `nb_train_samples = {arguments.samples}` and `early_stopping_patience = 1000` appended to the "
          f"settings (fixed-length trials). Same points for every W: {len(points) == 1}. On {cores} cores, W "
          f"workers cannot give W x (4 workers: not 3.6x): the sweep's CPU ({cpu_all / trials:.1f} CPU-s per trial, "
          f"whatever W) bounds it at {trials * 3600 * cores / cpu_all:.0f} trials/hour ({cores} cores busy), "
          f"{base * cores / cpu_all:.2f}x the {arguments.workers[0]}-worker rate measured here."
          + (f" Other processes used {others:.2f} cores (median over the runs): a sweep's share of a contended CPU "
             "grows with its processes, so the speed-ups overstate what W workers give on an idle machine."
             if others > 0.25 else "")
          + "\n")
    print("\n".join(lines), flush=True)
    problems = [problem for group in runs.values() for run in group for problem in run["problems"]]
    print(f"\nchecks: {len(problems)} problem(s)" + "".join(f"\n  {problem}" for problem in problems))
    if worth:
        print(f"log lines worth a look (runs out of {len(logs)} that printed each):")
        for line, count in worth.most_common(12):
            print(f"  {count:2d}x {line}")
    return lines


# --- scheduler: ASHA against the full sweep ---------------------------------------------------------------------------

def scheduled_sweep(workdir, trials, epochs, seed, workers, scheduler, log_path):
    """One `sweep --algo rand --workers W [--scheduler S]` run: wall, CPU of the process tree, epochs trained (from
    each trial's history.csv), device-hours and the best value (sweep.json)."""
    working_folder = workdir / WORKING_FOLDER
    before = set(working_folder.glob("*_sweep_*")) if working_folder.is_dir() else set()
    arguments = ["sweep", "-u", SETTINGS, "--max-evals", str(trials), "--workers", str(workers), "--seed", str(seed),
                 "--algo", "rand", "--hparam", f"nbEpoch={epochs}"] + (["--scheduler", scheduler] if scheduler else [])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        code = subprocess.run(command(*arguments), cwd=workdir, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"sweep --scheduler {scheduler} failed with exit code {code}:\n" + "\n".join(tail))
    (folder,) = set(working_folder.glob("*_sweep_*")) - before
    spec = json.loads((folder / "sweep.json").read_text())
    with open(folder / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    trained = sum(len((Path(row["experiment"]) / "history.csv").read_text().splitlines()) - 1 for row in rows)
    problems = [] if spec.get("status") == "finished" and len(rows) == trials else \
        [f"sweep.json: status {spec.get('status')}, results.csv: {len(rows)} rows"]
    return {"wall": wall, "cpu": (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime),
            "epochs": trained, "device_hours": spec.get("device_hours"), "best": spec["best"]["best_value"],
            "best_trial": spec["best"]["trial"], "problems": problems,
            "points": sorted((row["learningRate"], row["hiddenNeurons"]) for row in rows)}


def scheduler_part(arguments):
    trials = arguments.trials or 12
    epochs = arguments.epochs or 9
    workers = arguments.workers[0] if arguments.workers != [1, 2, 4] else 2
    print(f"\n## scheduler: {trials} trials x {epochs} epochs, --algo rand --seed {arguments.seed}, {workers} workers, "
          f"{arguments.samples} samples, {arguments.rounds} rounds ({machine_line()})", flush=True)
    runs = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="bench_sweep_scheduler_") as root:
        workdir = bench_workdir(Path(root), arguments.samples)
        for round_index in range(arguments.rounds):
            order = ["none", "asha"] if round_index % 2 == 0 else ["asha", "none"]
            for scheduler in order:
                run = scheduled_sweep(workdir, trials, epochs, arguments.seed, workers,
                                      None if scheduler == "none" else scheduler,
                                      Path(root) / f"sweep-{scheduler}-r{round_index + 1}.log")
                runs[scheduler].append(run)
                print(f"round {round_index + 1}, {scheduler:4}: wall {run['wall']:6.1f} s, CPU {run['cpu']:6.1f} s, "
                      f"{run['epochs']} epochs, {run['device_hours']:.4f} device-hours, best {MONITOR} "
                      f"{run['best']:.5g} (trial {run['best_trial']})"
                      + "".join(f"\n  PROBLEM: {problem}" for problem in run["problems"]), flush=True)
    same_points = len({tuple(run["points"]) for group in runs.values() for run in group}) == 1

    def median(scheduler, key):
        return statistics.median(run[key] for run in runs[scheduler])

    header = ["scheduler", "epochs trained", "wall, median (s)", "CPU, median (s)", "device-hours, median",
              f"best {MONITOR}, median (each)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scheduler in ("none", "asha"):
        each = ", ".join(f"{run['best']:.4g}" for run in runs[scheduler])
        lines.append(f"| {scheduler} | {median(scheduler, 'epochs'):.0f} | {median(scheduler, 'wall'):.1f} | "
                     f"{median(scheduler, 'cpu'):.0f} | {median(scheduler, 'device_hours'):.4f} | "
                     f"{median(scheduler, 'best'):.5g} ({each}) |")
    ratio = {key: median("asha", key) / median("none", key) for key in ("epochs", "wall", "cpu", "device_hours")}
    best_gap = median("asha", "best") / median("none", "best") - 1
    lines.append(f"| asha / none | {ratio['epochs']:.2f} | {ratio['wall']:.2f} | {ratio['cpu']:.2f} | "
                 f"{ratio['device_hours']:.2f} | {best_gap:+.1%} |")
    print(f"\nCommand: `{command_line()}` ({machine_line()}): `experiments-manager sweep -u {SETTINGS} --max-evals "
          f"{trials} --workers {workers} --algo rand --seed {arguments.seed} --hparam nbEpoch={epochs}` with and "
          f"without `--scheduler asha` (eta 3, first rung 1 epoch), side by side, the order alternating, in a copy of "
          f"examples/ with `nb_train_samples = {arguments.samples}` and `early_stopping_patience = 1000` appended "
          f"(fixed-length trials). Same points in every sweep: {same_points}. Target: at most 40 % of the epochs, "
          f"best value within 5 %.\n")
    print("\n".join(lines), flush=True)
    return lines


# --- memory: the warm trial host trial after trial -------------------------------------------------------------------

HOST_MODULE = "experiments_manager.sweeps.trial_host"
SAMPLE_SECONDS = 0.2
MEMORY_AT = (1, 5, 10, 20, 30, 40)  # and the last trial
MIB = 1 << 20


def process_tree():
    """{pid: (parent pid, command line)} of every process now (those gone meanwhile left out)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        table[int(entry.name)] = (int(stat[stat.rindex(")") + 2:].split()[1]), cmdline)
    return table


def descendants(root, table):
    children = collections.defaultdict(list)
    for pid, (parent, _) in table.items():
        children[parent].append(pid)
    found, todo = [], [root]
    while todo:
        for child in children[todo.pop()]:
            found.append(child)
            todo.append(child)
    return found


def rss_and_threads(pid):
    """(VmRSS in bytes, Threads) from /proc/<pid>/status, or None when the process is gone (or a zombie)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":" in line)
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["Threads"])
    except (OSError, KeyError, ValueError):
        return None


def trial_states(folder):
    """{trial number: (status, pid)} of the sweep's trial records (a record being replaced is skipped)."""
    states = {}
    for path in (folder / "trials").glob("trial-*.json"):
        try:
            record = json.loads(path.read_text())
            states[int(path.stem.split("-")[1])] = (record.get("status"), record.get("pid"))
        except (OSError, ValueError):
            continue
    return states


def sampled_sweep(workdir, trials, epochs, seed, log_path):
    """One sequential sweep, its trial host(s) and itself sampled every SAMPLE_SECONDS while it runs."""
    working_folder = workdir / WORKING_FOLDER
    before = set(working_folder.glob("*_sweep_*")) if working_folder.is_dir() else set()
    arguments = ["sweep", "-u", SETTINGS, "--max-evals", str(trials), "--workers", "1", "--seed", str(seed),
                 "--hparam", f"nbEpoch={epochs}"]
    samples, served, ended_at, folder = [], {}, {}, None
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command(*arguments), cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None:
            tick = time.perf_counter()
            if folder is None:
                new = set(working_folder.glob("*_sweep_*")) - before if working_folder.is_dir() else set()
                folder = next(iter(new), None)
            states = trial_states(folder) if folder is not None else {}
            ended = sum(status in ("finished", "failed") for status, _ in states.values())
            for number, (status, pid) in states.items():
                if status == "running" and pid:
                    served.setdefault(number, pid)
            ended_at.setdefault(ended, tick - start)
            table = process_tree()
            hosts = {}
            for pid in descendants(process.pid, table):
                if HOST_MODULE in table[pid][1]:
                    measured = rss_and_threads(pid)
                    if measured is not None:
                        hosts[pid] = measured
            samples.append({"t": tick - start, "ended": ended, "hosts": hosts, "sweep": rss_and_threads(process.pid)})
            time.sleep(max(0.0, SAMPLE_SECONDS - (time.perf_counter() - tick)))
    wall = time.perf_counter() - start
    problems = [] if process.returncode == 0 else [f"the sweep exited with code {process.returncode}"]
    if folder is None:
        folder = next(iter(set(working_folder.glob("*_sweep_*")) - before), None)
    if folder is None:
        return {"wall": wall, "samples": samples, "served": served, "states": {}, "ended_at": ended_at,
                "problems": problems + ["no sweep folder"]}
    left = processes_in(workdir)
    if left:
        time.sleep(2)
        left = processes_in(workdir)
        if left:
            problems.append(f"processes left in the work folder 2 s after the sweep exited: {left}")
    spec = json.loads((folder / "sweep.json").read_text()) if (folder / "sweep.json").is_file() else {}
    if spec.get("status") != "finished" or spec.get("trials_done") != trials:
        problems.append(f"sweep.json: status {spec.get('status')}, trials_done {spec.get('trials_done')} "
                        f"(expected finished, {trials})")
    states = trial_states(folder)
    not_finished = {number: status for number, (status, _) in states.items() if status != "finished"}
    if len(states) != trials or not_finished:
        problems.append(f"{len(states)} trial records, not finished: {not_finished}")
    return {"wall": wall, "samples": samples, "served": served, "states": states, "ended_at": ended_at,
            "problems": problems, "folder": folder}


def least_squares_slope(points):
    """The slope of the least-squares line through (x, y) points (nan with fewer than 2 distinct x)."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n if n else 0.0
    mean_y = sum(y for _, y in points) / n if n else 0.0
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else float("nan")


def host_after_each_trial(run, trials):
    """{k: dict} for each k in 1..trials: the host serving after trial k (that of trial k+1, or of trial k for
    the last) over the window from trial k's end to trial k+1's: min and max RSS and threads, the sweep's RSS."""
    windows = collections.defaultdict(list)
    for sample in run["samples"]:
        windows[sample["ended"]].append(sample)
    after = {}
    for k in range(1, trials + 1):
        pid = run["served"].get(k + 1) or run["served"].get(k)
        window = [sample["hosts"][pid] for sample in windows[k] if pid in sample["hosts"]]
        note = ""
        if not window and k == trials:  # the host left before a sample: its last ones, while trial k trained
            window = [sample["hosts"][pid] for sample in windows[k - 1] if pid in sample["hosts"]][-1:]
            note = "last sample during the trial"
        sweep = [sample["sweep"][0] for sample in windows[k] if sample["sweep"]]
        if not window:
            continue
        after[k] = {"pid": pid, "samples": len(window), "rss": min(rss for rss, _ in window),
                    "peak": max(rss for rss, _ in window), "threads": min(threads for _, threads in window),
                    "threads_max": max(threads for _, threads in window),
                    "sweep": min(sweep) if sweep else float("nan"), "note": note}
    return after


def host_replacements(run, after):
    """[(first trial the new host served, old pid, new pid, why)] from the records and the samples."""
    from experiments_manager.sweeps.trial_host import MAX_RSS_GROWTH_BYTES, MAX_TRIALS_PER_HOST

    served = run["served"]
    numbers = sorted(served)
    replaced = []
    for earlier, later in zip(numbers, numbers[1:]):
        if served[earlier] == served[later]:
            continue
        old = served[earlier]
        count = sum(pid == old for pid in served.values())
        status = run["states"].get(earlier, (None, None))[0]
        first = min((one["rss"] for k, one in after.items() if run["served"].get(k) == old), default=None)
        last = max((one["peak"] for k, one in after.items() if run["served"].get(k) == old), default=None)
        if later != earlier + 1:
            why = f"trials {earlier + 1}..{later - 1} not seen running (too short for a sample)"
        elif status == "failed":
            why = f"trial {earlier} failed"
        elif count >= MAX_TRIALS_PER_HOST:
            why = f"MAX_TRIALS_PER_HOST ({MAX_TRIALS_PER_HOST}) trials served"
        elif first is not None and last - first > MAX_RSS_GROWTH_BYTES:
            why = f"RSS grew by {(last - first) / MIB:.0f} MiB > MAX_RSS_GROWTH_BYTES"
        else:
            why = f"unknown (trial {earlier} {status}; did the host die? see its log)"
        replaced.append((later, old, served[later], why))
    return replaced


def memory_part(arguments):
    trials = arguments.trials or 50
    epochs = arguments.epochs or 1
    print(f"\n## memory: {trials} trials x {epochs} epochs, 1 worker, {arguments.samples} samples, seed "
          f"{arguments.seed}, a sample every {SAMPLE_SECONDS} s ({machine_line()})", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_sweep_memory_") as root:
        workdir = bench_workdir(Path(root), arguments.samples)
        log_path = Path(root) / "sweep-memory.log"
        run = sampled_sweep(workdir, trials, epochs, arguments.seed, log_path)
        worth = log_lines_worth_a_look([log_path])
    after = host_after_each_trial(run, trials)
    hosts = list(dict.fromkeys(run["served"].values()))
    seen = list(dict.fromkeys(pid for sample in run["samples"] for pid in sample["hosts"]))
    replaced = host_replacements(run, after)
    print(f"sweep wall {run['wall']:.1f} s, {len(run['samples'])} samples; hosts seen {seen}, serving trials: "
          + ", ".join(f"{pid} ({sum(one == pid for one in run['served'].values())} trials)" for pid in hosts)
          + "".join(f"\n  new host {new} from trial {number} (was {old}): {why}" for number, old, new, why in replaced),
          flush=True)
    for k in range(1, trials + 1):
        if k in after:
            one = after[k]
            print(f"  after trial {k:3d}: host {one['pid']} RSS {one['rss'] / MIB:7.1f} MiB (next trial's peak "
                  f"{one['peak'] / MIB:7.1f}), threads {one['threads']:3d} (max {one['threads_max']:3d}), sweep RSS "
                  f"{one['sweep'] / MIB:6.1f} MiB, {one['samples']} samples" + (f" ({one['note']})" if one['note']
                                                                                 else ""))
        else:
            print(f"  after trial {k:3d}: no sample of its host")
    rows = [k for k in (*MEMORY_AT, trials) if k <= trials and k in after]
    rows = list(dict.fromkeys(rows))
    steady = [(k, after[k]) for k in range(min(5, trials), trials + 1) if k in after]
    slope = least_squares_slope([(k, one["rss"] / MIB) for k, one in steady])
    thread_slope = least_squares_slope([(k, one["threads"]) for k, one in steady])
    sweep_slope = least_squares_slope([(k, one["sweep"] / MIB) for k, one in steady])
    first, last = (steady[0], steady[-1]) if steady else ((0, None), (0, None))
    growth = (last[1]["rss"] - first[1]["rss"]) / MIB if steady else float("nan")
    header = ["after trial", "host pid", "host RSS, min between trials (MiB)", "next trial's peak (MiB)",
              "host threads (min / max)", "sweep process RSS (MiB)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for k in rows:
        one = after[k]
        peak = "- (the last trial)" if k == trials else f"{one['peak'] / MIB:.1f}"
        lines.append(f"| {k} | {one['pid']} | {one['rss'] / MIB:.1f}{' (' + one['note'] + ')' if one['note'] else ''}"
                     f" | {peak} | {one['threads']} / {one['threads_max']} | "
                     f"{one['sweep'] / MIB:.1f} |")
    if steady:
        lines.append(f"| {first[0]} -> {last[0]}: growth | {len(hosts)} host(s) | {growth:+.1f} ({slope:+.2f} per "
                     f"trial, least squares) | | {last[1]['threads'] - first[1]['threads']:+d} ({thread_slope:+.3f} "
                     f"per trial) | {(last[1]['sweep'] - first[1]['sweep']) / MIB:+.1f} ({sweep_slope:+.2f} per "
                     "trial) |")
    print(f"\nCommand: `{command_line()}` ({machine_line()}): `experiments-manager sweep -u {SETTINGS} --max-evals "
          f"{trials} --workers 1 --seed {arguments.seed} --hparam nbEpoch={epochs}` in a copy of examples/ with "
          f"`nb_train_samples = {arguments.samples}` and `early_stopping_patience = 1000` appended; wall "
          f"{run['wall']:.1f} s, {trials * 60 / run['wall']:.1f} trials/minute. The trial host and the sweep "
          f"process sampled every {SAMPLE_SECONDS} s (VmRSS, Threads of /proc/<pid>/status); 'after trial k': the "
          "minimum over the samples from trial k's end to trial k+1's (the host at rest between trials), beside the "
          f"maximum (trial k+1's peak). Host pids: {', '.join(map(str, hosts)) or 'none seen'} "
          f"({len(hosts)} host(s) served the {trials} trials"
          + "".join(f"; a new one from trial {number}: {why}" for number, _, _, why in replaced) + ").\n")
    print("\n".join(lines), flush=True)
    problems = list(run["problems"])
    if not after:
        problems.append("no sample of a trial host")
    print(f"\nchecks: {len(problems)} problem(s)" + "".join(f"\n  PROBLEM: {problem}" for problem in problems))
    if worth:
        print("log lines worth a look:")
        for line, _ in worth.most_common(12):
            print(f"  {line}")
    return lines


# --- overhead (the first benchmark) ----------------------------------------------------------------------------------

def timed_sweep(workdir, trials, epochs, seed, parallelism, workers=1):
    """(wall seconds, seconds at which each trial started, rows of results.csv).

    A trial has started when its log appears in the sweep's trials/ folder.
    """
    working_folder = workdir / WORKING_FOLDER
    before = set(working_folder.glob("*_sweep_*")) if working_folder.is_dir() else set()
    arguments = ["sweep", "-u", SETTINGS, "--max-evals", str(trials), "--seed", str(seed),
                 "--hparam", f"nbEpoch={epochs}", "--parallelism", str(parallelism), "--workers", str(workers)]
    start = time.perf_counter()
    process = subprocess.Popen(command(*arguments), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder, started = None, {}
    while process.poll() is None:
        if folder is None:
            new = set(working_folder.glob("*_sweep_*")) - before if working_folder.is_dir() else set()
            folder = next(iter(new), None)
        if folder is not None:
            for log in (folder / "trials").glob("*.log"):
                started.setdefault(log.name, time.perf_counter() - start)
        time.sleep(0.02)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"sweep failed with exit code {process.returncode}")
    with open(folder / "results.csv", newline="") as handle:
        return wall, sorted(started.values()), list(csv.DictReader(handle))


def timed_train(workdir, row, epochs):
    arguments = ["train", "-u", SETTINGS, "--hparam", f"nbEpoch={epochs}",
                 "--hparam", f"learningRate={row['learningRate']}", "--hparam", f"hiddenNeurons={row['hiddenNeurons']}"]
    start = time.perf_counter()
    subprocess.run(command(*arguments), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def overhead_part(arguments):
    trials = arguments.trials or 4
    epochs = arguments.epochs or 3
    print(f"\n## overhead: {trials} trials, {epochs} epochs, {arguments.samples} samples, seed {arguments.seed} "
          f"({machine_line()})", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as root:
        workdir = bench_workdir(Path(root), arguments.samples)
        sequential, sequential_start, rows = timed_sweep(workdir, trials, epochs, arguments.seed, 1)
        trains = [timed_train(workdir, row, epochs) for row in rows]
        spark, local = [], []  # (wall, starts, rows) of each round, the order alternating
        for round_number in range(arguments.rounds):
            for launcher in (("spark", "local") if round_number % 2 == 0 else ("local", "spark")):
                if launcher == "spark":
                    spark.append(timed_sweep(workdir, trials, epochs, arguments.seed, 2))
                else:
                    local.append(timed_sweep(workdir, trials, epochs, arguments.seed, 1, workers=2))
    parallel = statistics.median(wall for wall, _, _ in spark)
    parallel_start = statistics.median(starts[0] for _, starts, _ in spark)
    parallel_rows = spark[0][2]
    local_wall = statistics.median(wall for wall, _, _ in local)
    local_start = statistics.median(starts[0] for _, starts, _ in local)
    train = statistics.median(trains)
    cycles = [later - earlier for earlier, later in zip(sequential_start, sequential_start[1:])]
    cycle = statistics.median(cycles)
    trial_process = statistics.median(float(row["seconds"]) for row in rows)
    same_points = sorted(row["learningRate"] for row in rows) == sorted(row["learningRate"] for row in parallel_rows)
    print(f"train (CLI) wall, median of {len(trains)}:              {train:6.2f} s  "
          f"({', '.join(f'{t:.2f}' for t in trains)})")
    print(f"sequential sweep, trial start to next start:  {cycle:6.2f} s  ({', '.join(f'{c:.2f}' for c in cycles)})")
    print(f"  of which the trial process (median):        {trial_process:6.2f} s")
    print(f"  per-trial overhead vs train:                {cycle - train:+6.2f} s = {(cycle - train) / train:+.1%} "
          "(target <= +10%)")
    print(f"  driver start-up (to the first trial):       {sequential_start[0]:6.2f} s, wall {sequential:.2f} s")
    print(f"parallel sweep (--parallelism 2: Spark starts 2 workers), median of {len(spark)}: {parallel:6.2f} s  "
          f"({', '.join(f'{wall:.2f}' for wall, _, _ in spark)}; to the first trial {parallel_start:.2f} s; "
          f"same points as sequential: {same_points})")
    print(f"  speed-up, end to end:                       {sequential / parallel:6.2f}x")
    print(f"  speed-up, from the first trial's start:     "
          f"{(sequential - sequential_start[0]) / (parallel - parallel_start):6.2f}x")
    print(f"local workers (--workers 2), median of {len(local)}:  {local_wall:6.2f} s  "
          f"({', '.join(f'{wall:.2f}' for wall, _, _ in local)}; to the first trial {local_start:.2f} s)")
    print(f"  Spark's launcher / local workers, wall:     {parallel / local_wall:6.2f}x "
          f"(from the first trial's start: {(parallel - parallel_start) / (local_wall - local_start):.2f}x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", action="append", choices=(*PARTS, "all"),
                        help="what to measure (repeatable; default: coordination and workers; all: every part)")
    parser.add_argument("--trials", type=int, help="trials per sweep (workers: default 8; overhead: 4; scheduler: 12; memory: 50)")
    parser.add_argument("--epochs", type=int, help="epochs per trial (workers: default 2; overhead: 3; scheduler: 9; memory: 1)")
    parser.add_argument("--samples", type=int, default=2000, help="training samples of the regression example")
    parser.add_argument("--seed", type=int, default=11, help="the sweeps' seed")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4],
                        help="workers: the W values compared (scheduler: the first given, else 2)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="workers: sweeps per W, side by side; overhead: sweeps of each parallel launcher")
    parser.add_argument("--finished", type=int, nargs="+", default=[100, 1000],
                        help="coordination: finished trials in the journal")
    parser.add_argument("--repeats", type=int, default=20, help="coordination: ask/tell rounds measured per size")
    arguments = parser.parse_args()
    parts = arguments.part or ["coordination", "workers"]
    parts = [part for part in PARTS if part in parts or "all" in parts]
    start = time.perf_counter()
    for part in parts:
        {"coordination": coordination_part, "workers": workers_part, "overhead": overhead_part,
         "scheduler": scheduler_part, "memory": memory_part}[part](arguments)
    print(f"\n{', '.join(parts)}: {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
