"""Runs the real `tensorflow_model_server` (from PATH or an Apptainer image) on the same sources.

It reads the same `models.config` and listens on the same ports as the
embedded server. It has no bind-address flag: it listens on every interface.

Example:

```python
launch = TensorFlowModelServer(sources, options, apptainer_image="tf_server.sif")
print(launch.write_config_files("/tmp/tf-serving-config"))   # the command line it would run
exit_code = launch.run()
```
"""

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from experiments_manager.run.served_layout import models_config_text
from experiments_manager.utils.atomic import write_text_atomically
from experiments_manager.utils.errors import UserInputError
from experiments_manager.utils.signals import signal_handlers

if TYPE_CHECKING:
    from experiments_manager.run.served_layout import ModelSource
    from experiments_manager.serving.folder import WorkingFolder
    from experiments_manager.serving.options import ServerOptions

BINARY = "tensorflow_model_server"


class TensorFlowModelServer:
    """The command and config files for `tensorflow_model_server`.

    Args:
        sources: the `ModelSource`s to serve.
        options: `ServerOptions` (ports, poll interval, batching).
        apptainer_image: run the binary inside this .sif image instead of from PATH.
        working_folder: a `serving.folder.WorkingFolder` (default None): the binary then reads the models.config it
            writes, again every `poll_seconds` (`--model_config_file_poll_wait_seconds`), instead of one written
            for it here.
    """

    def __init__(self, sources: "list[ModelSource]", options: "ServerOptions",
                 apptainer_image: "str | Path | None" = None, working_folder: "WorkingFolder | None" = None) -> None:
        self.sources = sources
        self.options = options
        self.apptainer_image = Path(apptainer_image) if apptainer_image else None
        self.working_folder = working_folder

    def _executable(self, config_dir: Path, dry_run: bool = False) -> "list[str]":
        """The command prefix that runs the binary; a clear error when it is not there (a dry run names it as it
        would be found: the command is printed on a machine that may lack it)."""
        if self.apptainer_image is not None:
            if not self.apptainer_image.is_file() and not dry_run:
                raise UserInputError(f"--apptainer-image: {self.apptainer_image}: file not found")
            runner = shutil.which("apptainer") or shutil.which("singularity") or ("apptainer" if dry_run else None)
            if runner is None:
                raise UserInputError("--apptainer-image: neither apptainer nor singularity is on PATH")
            binds = {str(Path(source.base_path).resolve()) for source in self.sources} | {str(config_dir)}
            if self.working_folder is not None:  # experiments added later, and the models.config it rewrites
                binds |= {str(self.working_folder.folder.resolve()),
                          str(self.working_folder.config_file.parent.resolve())}
            return [runner, "exec", "--bind", ",".join(sorted(binds)), str(self.apptainer_image), BINARY]
        found = shutil.which(BINARY) or (BINARY if dry_run else None)
        if found is None:
            raise UserInputError(
                f"--tensorflow-model-server: {BINARY} is not on PATH; "
                "give --apptainer-image SIF, or serve with the embedded server (drop the flag)"
            )
        return [found]

    def write_config_files(self, folder: "str | Path", dry_run: bool = False) -> "list[str]":
        """Writes models.config (and batching.config) into `folder`; returns the command to run. With a working
        folder, its own models.config is named instead (and re-read every `poll_seconds`), written by its owner.

        Args:
            folder: where models.config and batching.config go (a temporary folder, or the dry run's).
            dry_run: the command is printed, not run (default False): a binary or image missing here is named as
                it would be found.

        Example:

        ```python
        command = TensorFlowModelServer(sources, options).write_config_files(tmp)
        # ['tensorflow_model_server', '--port=8500', '--rest_api_port=8501', f'--model_config_file={tmp}/models.config', ...]
        ```
        """
        config_dir = Path(folder).resolve()
        executable = self._executable(config_dir, dry_run)  # a missing binary is refused before anything is written
        if self.working_folder is None:
            config = config_dir / "models.config"
            write_text_atomically(config, models_config_text(self.sources))
            config_flags = [f"--model_config_file={config}"]
        else:
            config_flags = [f"--model_config_file={self.working_folder.config_file.resolve()}"]
            if self.working_folder.poll_seconds > 0:
                config_flags.append(
                    f"--model_config_file_poll_wait_seconds={max(1, round(self.working_folder.poll_seconds))}")
        arguments = [
            f"--port={self.options.grpc_port}",
            f"--rest_api_port={self.options.rest_port}",
            *config_flags,
            f"--file_system_poll_wait_seconds={max(1, round(self.options.poll_seconds))}",
            f"--rest_api_timeout_in_ms={round(self.options.request_seconds * 1000)}",
        ]
        if self.options.batching is not None:
            batching = config_dir / "batching.config"
            write_text_atomically(
                batching,
                f"max_batch_size {{ value: {self.options.batching.max_batch_size} }}\n"
                f"batch_timeout_micros {{ value: {self.options.batching.batch_timeout_micros} }}\n",
            )
            arguments += ["--enable_batching=true", f"--batching_parameters_file={batching}"]
        return executable + arguments

    def run(self) -> int:
        """Runs the binary until it exits or this process gets SIGINT/SIGTERM; returns its exit code."""
        with tempfile.TemporaryDirectory(prefix="tensorflow_model_server-") as folder:
            command = self.write_config_files(folder)
            process = subprocess.Popen(command)
            with signal_handlers(lambda signum, frame: process.send_signal(signum)):
                return process.wait()
