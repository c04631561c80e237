"""Scale-out: a training step with ``launch.num_processes > 1`` re-runs itself under ``accelerate launch``.

The CLI process builds ``python -m accelerate.commands.launch --config_file <cfg> --num_processes N
-m vlthinker.cli step sft ...`` with the same arguments and waits for it; each launched process runs
the step normally (it sees the distributed environment the launcher set and does not launch again).
Configs for multi-GPU and DeepSpeed ZeRO-3 live in ``recipes/accelerate/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vlthinker.config import LaunchConfig
from vlthinker.errors import ConfigError

Log = Callable[[str], None]
# The variables a distributed launcher (accelerate, torchrun) sets in every process it starts.
LAUNCHER_VARIABLES = ("LOCAL_RANK", "RANK", "WORLD_SIZE")


def inside_launcher() -> bool:
    """True in a process started by accelerate/torchrun: never launch again from there."""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def needs_launch(launch: LaunchConfig) -> bool:
    return launch.num_processes > 1 and not inside_launcher()


def world_size() -> int:
    """How many processes train together (1 unless started by a distributed launcher)."""
    from vlthinker.training.common import distributed_state

    return distributed_state().num_processes


def launch_command(launch: LaunchConfig, cli_args: Sequence[str]) -> list[str]:
    """The command that runs ``vlthinker <cli_args>`` in ``launch.num_processes`` processes."""
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if launch.accelerate_config:
        config_file = Path(launch.accelerate_config)
        if not config_file.is_file():
            raise ConfigError(f"launch.accelerate_config: {config_file} not found")
        command += ["--config_file", str(config_file)]
    else:
        command += ["--multi_gpu"]
    command += ["--num_processes", str(launch.num_processes)]
    if launch.main_process_port is not None:
        command += ["--main_process_port", str(launch.main_process_port)]
    return [*command, "-m", "vlthinker.cli", *cli_args]


def relaunch(launch: LaunchConfig, cli_args: Sequence[str], log: Log = print) -> int:
    """Run the step under ``accelerate launch``; return its exit code."""
    command = launch_command(launch, cli_args)
    log(f"launch: {launch.num_processes} processes: {' '.join(command)}")
    return subprocess.run(command, check=False).returncode
