"""A real single-node SLURM (munged, slurmctld, slurmd on 127.0.0.1) for tests, kept in one directory.

Everything lives under the given directory: the munge key and socket, `slurm.conf`, state, spool,
logs. Clients find `slurm.conf` through `SLURM_CONF`, except the `srun` that Snakemake's job step
runs inside each job: it drops every inherited `SLURM_*` variable and reads the default
`/etc/slurm/slurm.conf`. So that path is linked to ours while the cluster runs, and only when no
other configuration is there. Free ports are picked so no other SLURM is touched.
Each daemon runs in the foreground as a child of this process, so it is stopped by its own PID.
Finished jobs stay visible to `squeue --states=all` for `MinJobAge` seconds: Snakemake's SLURM
executor polls with `squeue` because there is no accounting database (`sacct` returns nothing).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")


def missing_requirements() -> str | None:
    """Why a SLURM cannot be started here (not root, binaries missing), or None when it can."""
    if os.geteuid() != 0:
        return "starting munged/slurmctld/slurmd needs root"
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        return f"SLURM binaries not found on PATH: {', '.join(missing)} (apt-get install slurm-wlm munge)"
    if DEFAULT_CONF.exists() or DEFAULT_CONF.is_symlink():
        return f"{DEFAULT_CONF} exists; a test cluster would need that path for the srun inside jobs"
    return None


def _free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on 127.0.0.1 right now."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class SlurmCluster:
    """A running single-node SLURM; `env` holds the variables its clients need."""

    root: Path
    partition: str = "debug"
    node: str = ""
    conf: Path | None = None
    env: dict = field(default_factory=dict)
    processes: dict = field(default_factory=dict)

    def start(self, timeout: float = 60.0) -> "SlurmCluster":
        """Start munged, slurmctld and slurmd, and wait until the node is idle."""
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        os.chmod(key, 0o400)
        munge_socket = self.root / "munge" / "munge.socket"
        self._spawn("munged", ["munged", "--foreground", "--force", f"--socket={munge_socket}",
                               f"--key-file={key}", f"--pid-file={self.root / 'munge/munged.pid'}",
                               f"--seed-file={self.root / 'munge/munged.seed'}",
                               f"--log-file={self.root / 'log/munged.log'}"])
        self._wait(lambda: munge_socket.exists(), timeout, "munged socket")
        self.node = socket.gethostname().split(".")[0]
        ctld_port, slurmd_port = _free_ports(2)
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 2048
        conf = self.root / "slurm.conf"
        conf.write_text(f"""\
ClusterName=tests
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=3600
StateSaveLocation={self.root / 'state'}
SlurmdSpoolDir={self.root / 'spool'}
SlurmctldPidFile={self.root / 'slurmctld.pid'}
SlurmdPidFile={self.root / 'slurmd.pid'}
SlurmctldLogFile={self.root / 'log/slurmctld.log'}
SlurmdLogFile={self.root / 'log/slurmd.log'}
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        self.env = {"SLURM_CONF": str(conf)}
        DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
        DEFAULT_CONF.symlink_to(conf)           # raises if another configuration appeared meanwhile
        self.conf = conf
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(conf)])
        self._wait(lambda: self._run("sinfo", "-h").returncode == 0, timeout, "slurmctld answering sinfo")
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(conf), "-N", self.node])
        self._wait(lambda: self._run("sinfo", "-h", "-o", "%T").stdout.strip() == "idle", timeout,
                   "the node to become idle")
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Cancel unfinished jobs by id, then stop the daemons by PID, slurmd first: TERM, then
        KILL after `grace` seconds."""
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            unfinished = [i for i, job in self.jobs().items() if job["state"] in ("PENDING", "RUNNING")]
            if unfinished:
                self._run("scancel", *unfinished)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(grace)
        if self.conf is not None and DEFAULT_CONF.is_symlink() and DEFAULT_CONF.readlink() == self.conf:
            DEFAULT_CONF.unlink()

    def jobs(self) -> dict[str, dict[str, str]]:
        """Every job slurmctld still knows: id -> {state, name, comment}."""
        out = self._run("squeue", "--states=all", "--noheader", "--format=%i|%T|%j|%k").stdout
        rows = [line.split("|", 3) for line in out.splitlines() if line.strip()]
        return {i: {"state": s, "name": n, "comment": c} for i, s, n, c in rows}

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, timeout=30,
                              env={**os.environ, **self.env})

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")
        with log:
            self.processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL, env={**os.environ, **self.env})

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode} while waiting for {what}; "
                                       f"see {self.root / 'log'}")
            time.sleep(0.3)
        raise TimeoutError(f"SLURM under {self.root}: no {what} after {timeout:.0f} s; see {self.root / 'log'}")
