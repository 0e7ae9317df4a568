"""`make demo`: train the regression example, serve it while it trains, and stream predictions.

Two commands, as a user would run them in two terminals:
    experiments-manager train -u examples/regression/mysettings_curve_fitting.py --serve --keep-serving
    experiments-manager predict --model_dir EXPERIMENT --predict_stream -1 --interval 0.5
(the server runs beside training). Lines from training are prefixed [train];
the client prints each answer's error and each new model version that answers.
When training ends the demo stops the client, then the server (Ctrl-C in those terminals).
"""

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

SETTINGS = "examples/regression/mysettings_curve_fitting.py"
COMMAND = [sys.executable, "-m", "experiments_manager"]


def main():
    train = subprocess.Popen(
        COMMAND + ["train", "-u", SETTINGS, "--serve", "--keep-serving"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    folder = {}
    found, trained = threading.Event(), threading.Event()

    def relay():
        for line in train.stdout:
            match = re.match(r"Experiment folder: (.+)", line.strip())
            if match:
                folder["path"] = match[1]
                found.set()
            if line.startswith("Training ended; still serving"):
                trained.set()
            print(f"[train] {line}", end="", flush=True)
        found.set()
        trained.set()

    threading.Thread(target=relay, daemon=True).start()
    if not found.wait(300) or "path" not in folder:
        train.wait()
        return train.returncode or 1
    # the folder is named before the settings are loaded; the client opens it once its run.json exists
    run_file = Path(folder["path"]) / "run.json"
    deadline = time.monotonic() + 300
    while not run_file.is_file() and train.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if not run_file.is_file():
        train.wait()
        return train.returncode or 1
    client = subprocess.Popen(
        COMMAND + ["predict", "--model_dir", folder["path"], "--predict_stream", "-1", "--interval", "0.5",
                   "--wait-for-server", "120"],
    )
    trained.wait()
    time.sleep(1.5)  # the last version answers a few requests
    client.send_signal(signal.SIGINT)
    client_code = client.wait(60)
    train.send_signal(signal.SIGINT)
    train_code = train.wait(60)
    print(f"\nDemo over. Serve this experiment again with:\n"
          f"  experiments-manager serve --model_dir {folder['path']}")
    return train_code or client_code


if __name__ == "__main__":
    sys.exit(main())
