"""A real single-node SLURM (slurmctld + slurmd, munge auth) on localhost, for the profile test.

Needs root and Debian's packages (`apt-get install munge slurmctld slurmd slurm-client`, which
`.ci/run` installs). The cluster lives in a temporary folder: its own slurm.conf, state, spool,
logs and a job-completion file, and it advertises ``gpus`` fake GPUs (GRES backed by /dev/null),
so the workflow's ``gpu=1`` requests are scheduled as on a real GPU node while the code runs on
the CPU.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")
PACKAGES = "munge slurmctld slurmd slurm-client"
# Jobs must find the cluster without SLURM_CONF (the Snakemake job step clears SLURM_* variables),
# so the configuration goes where SLURM looks by default, as on a real cluster.
CONF_DIR = Path("/etc/slurm")
MARK = "# written by sparks tests/slurm_cluster.py"


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> str:
    """This machine's node line as slurmd reports it (CPUs, sockets, memory)."""
    out = subprocess.run(["/usr/sbin/slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("NodeName="))
    return " ".join(field for field in line.split() if not field.startswith("UpTime"))


class LocalSlurm:
    def __init__(self, root: Path, gpus: int = 2, partition: str = "sparks"):
        self.root = Path(root)
        self.gpus = gpus
        self.partition = partition
        self.conf = CONF_DIR / "slurm.conf"
        self.jobcomp = self.root / "jobcomp.txt"
        self._daemons: list[subprocess.Popen] = []

    def _write_conf(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        node = _node_line()
        host = node.split()[0].split("=")[1]
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        if self.conf.exists() and MARK not in self.conf.read_text():
            raise RuntimeError(f"{self.conf} exists and is not ours: this machine has a SLURM already; use it")
        self.conf.write_text(
            "\n".join(
                [
                    MARK,
                    "ClusterName=sparks-ci",
                    f"SlurmctldHost={host}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "DefMemPerCPU=1000",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "JobCompType=jobcomp/filetxt",
                    f"JobCompLoc={self.jobcomp}",
                    "ReturnToService=2",
                    "SchedulerType=sched/backfill",
                    "GresTypes=gpu" if self.gpus else "",
                    "MinJobAge=7200",  # finished jobs stay in `scontrol show job` for the test to read
                    f"{node} NodeAddr=127.0.0.1{gres} State=UNKNOWN",
                    f"PartitionName={self.partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        if self.gpus:
            devices = [self.root / f"fake-gpu{i}" for i in range(self.gpus)]
            for device in devices:  # SLURM wants one file per GPU; nothing opens them
                device.touch()
            (CONF_DIR / "gres.conf").write_text("".join(f"Name=gpu File={d}\n" for d in devices))

    def _start_munge(self) -> None:
        check = "munge -n | unmunge"
        if subprocess.run(check, shell=True, capture_output=True).returncode == 0:
            return  # a munged is already serving this machine
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        self._wait(lambda: subprocess.run(check, shell=True, capture_output=True).returncode == 0, "munged")

    def _wait(self, ready, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.5)
        logs = "\n".join(p.read_text()[-2000:] for p in (self.root / "log").glob("*.log"))
        raise RuntimeError(f"{what} did not come up within {timeout:.0f} s; SLURM logs:\n{logs}")

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    def start(self) -> LocalSlurm:
        self._write_conf()
        self._start_munge()
        for daemon in ("slurmctld", "slurmd"):
            self._daemons.append(
                subprocess.Popen(
                    [f"/usr/sbin/{daemon}", "-D", "-f", str(self.conf)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        self._wait(self._node_idle, "the SLURM node")
        return self

    def next_job_id(self) -> int:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True)
        line = next(x for x in out.stdout.splitlines() if x.startswith("NEXT_JOB_ID"))
        return int(line.split("=")[1])

    def job_details(self) -> dict[str, dict[str, str]]:
        """``scontrol show job`` for every job SLURM still remembers, by job id."""
        out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, check=True)
        jobs = {}
        for line in out.stdout.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobId" in fields:
                jobs[fields["JobId"]] = fields
        return jobs

    def completed_jobs(self) -> list[dict[str, str]]:
        """One dict per finished job from the job-completion file (JobId, JobName, JobState, ...)."""
        if not self.jobcomp.exists():
            return []
        jobs = []
        for line in self.jobcomp.read_text().splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            jobs.append(fields)
        return jobs

    def stop(self) -> None:
        for proc in self._daemons:
            proc.terminate()
        for proc in self._daemons:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._daemons.clear()
        for name in ("slurm.conf", "gres.conf"):
            (CONF_DIR / name).unlink(missing_ok=True)

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
