"""A sweep's worker loop with instant made-up trials, for one simulated node (tests/e2e/test_cluster.py): the
sweep's shared state (`sweeps/store.py`) hammered from several nodes, without training.

    python tests/cluster_sim/sweep_node.py setup SWEEP MAX_EVALS
    python tests/cluster_sim/sweep_node.py work SWEEP         # asks and tells until nothing is left
    (a trial "trains" for TRIAL_SECONDS, or until the file TRIAL_UNTIL exists)
    python tests/cluster_sim/sweep_node.py summary SWEEP      # the records, as JSON
    python tests/cluster_sim/sweep_node.py raise SWEEP MAX_EVALS  # what a resume with more trials records
"""

import json
import math
import os
import random
import sys
import time
from pathlib import Path

from hyperopt import hp

from experiments_manager.sweeps.folder import SweepFolder
from experiments_manager.sweeps.space import SearchSpace
from experiments_manager.sweeps.steps import Assignment, NothingLeft
from experiments_manager.sweeps.store import SweepStore, worker_identity
from experiments_manager.sweeps.sampler import SeededSuggestions
from experiments_manager.utils.lease import LeaseLost

SPACE = {"learningRate": hp.loguniform("learningRate", -9, -2), "hiddenNeurons": hp.quniform("hiddenNeurons", 4, 64, 4)}


def store(root: Path, max_evals: int = 0) -> SweepStore:
    space = SearchSpace(SPACE, {"learningRate": 0.01, "hiddenNeurons": 16}, "settings.py")
    return SweepStore(SweepFolder(root), space, SeededSuggestions("rand", 7), max_evals, "val_loss")


def main(action: str, root: str, max_evals: str = "0") -> None:
    folder = Path(root)
    if action == "setup":
        folder.mkdir(parents=True, exist_ok=True)
        SweepFolder(folder).write_spec({"status": "running", "max_evals": int(max_evals), "space": {},
                                        "trials_done": 0})
        return
    if action == "raise":  # as `sweep --resume SWEEP --max-evals N` does while other workers run
        sweep = store(folder)
        with sweep.locked():
            SweepFolder(folder).update_spec(max_evals=int(max_evals))
        return
    if action == "summary":
        records = sorted((folder / "trials").glob("trial-*.json"))
        print(json.dumps([json.loads(path.read_text()) for path in records]))
        return
    sweep, worker, trained = store(folder), worker_identity(), 0
    random.seed(worker["host"])
    while True:
        step = sweep.next_trial(worker)
        # a claim elsewhere that looks stale is watched, as SweepWorkers does; this worker also stays while trials
        # run elsewhere (a worker would leave then): the test's frozen or crashed node may hold the last of them
        if isinstance(step, NothingLeft) and (step.watching or step.running):
            time.sleep(0.5)
            continue
        if not isinstance(step, Assignment):
            break
        until = os.environ.get("TRIAL_UNTIL")  # the trial "trains": until that file exists, or for a while
        if until:
            while not os.path.exists(until):
                time.sleep(0.1)
        else:
            time.sleep(float(os.environ.get("TRIAL_SECONDS") or random.uniform(0.05, 0.3)))
        loss = (math.log(step.entry.hparams["learningRate"]) + 5.3) ** 2
        try:
            step.record.update(status="running")  # as run_trial records it as the trial starts, then as it ends
            step.record.update(status="finished", best_value=loss, best_epoch=1, loss=loss, seconds=0.1,
                               experiment=f"{worker['host']}-{step.entry.number}")
        except LeaseLost as lost:  # this node was frozen past the fence: the trial is another worker's now
            sweep.give_back(step)
            print(json.dumps({"host": worker["host"], "trained": trained, "lost": str(lost)}))
            sys.exit(75)
        sweep.record_result(step)
        trained += 1
    print(json.dumps({"host": worker["host"], "trained": trained}))


if __name__ == "__main__":
    main(*sys.argv[1:])
