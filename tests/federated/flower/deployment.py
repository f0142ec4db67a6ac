"""A real Flower deployment on 127.0.0.1 for tests: certificates, keys, SuperLink and SuperNodes.

Every process starts in its own session. ``Deployment.stop`` ends each one
with its whole process tree (the SuperExec and app processes that Flower
starts), first with SIGTERM and then SIGKILL, so a failing test leaves no
server behind.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import torch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedunlearn.federated.runtime.flower.launcher import flower_env, flwr_executable

BIN = Path(sys.executable).parent


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_certificates(directory: Path) -> dict[str, Path]:
    """Write a CA and a server certificate for 127.0.0.1 and localhost signed by it; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedunlearn test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP384R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.crt", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


def write_node_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """Write a SuperNode's EC P-384 key pair in OpenSSH format; return (private, public) paths."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private = directory / name
    public = directory / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH))
    private.chmod(0o600)
    return private, public


@dataclass
class Deployment:
    """SuperLink and SuperNodes started by a test, with their logs under ``root``."""

    root: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    certificates: dict[str, Path] | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def tls_args(self) -> list[str]:
        return ["--insecure"] if self.certificates is None else ["--root-certificates", str(self.certificates["ca"])]

    def start_superlink(self, *, supernode_auth: bool = False) -> None:
        args = ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.certificates is None:
            args.append("--insecure")
        else:
            args += ["--ssl-ca-certfile", str(self.certificates["ca"]), "--ssl-certfile",
                     str(self.certificates["cert"]), "--ssl-keyfile", str(self.certificates["key"])]
        if supernode_auth:
            args.append("--enable-supernode-auth")
        self._start("superlink", [str(BIN / "flower-superlink"), *args])
        self._wait_for_port(self.port, "superlink")

    def start_supernode(self, client_id: int, data_file: Path, private_key: Path | None = None) -> None:
        args = [*self.tls_args(), "--superlink", self.address, "--port", str(free_port()),
                "--node-config", f"client-id={client_id} data-file='{data_file}'"]
        if private_key is not None:
            args += ["--auth-supernode-private-key", str(private_key)]
        self._start(f"supernode_{client_id}", [str(BIN / "flower-supernode"), *args])

    def flwr(self, *args: str) -> subprocess.CompletedProcess:
        """Run the flwr command with this deployment's environment."""
        return subprocess.run([flwr_executable(), *args], env=self.env, capture_output=True, text=True, timeout=120)

    def kill(self, name: str) -> None:
        """Kill one process and its children at once (SIGKILL), as a machine that dies would."""
        _terminate(self.processes.pop(name), graceful=False)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for name in list(self.processes):
            _terminate(self.processes.pop(name), graceful=True)

    def _start(self, name: str, command: list[str]) -> None:
        with open(self.root / f"{name}.log", "w") as log:
            self.processes[name] = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                    start_new_session=True, cwd=self.root)

    def _wait_for_port(self, port: int, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited with code {self.processes[name].returncode}:\n{self.log(name)}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{name} did not listen on port {port} within {timeout:.0f} s:\n{self.log(name)}")


def _terminate(process: subprocess.Popen, *, graceful: bool) -> None:
    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    if graceful:
        for member in tree:
            _signal(member, psutil.Process.terminate)
        _, tree = psutil.wait_procs(tree, timeout=10)
    for member in tree:
        _signal(member, psutil.Process.kill)
    psutil.wait_procs(tree, timeout=10)
    process.wait(timeout=10)


def _signal(member: psutil.Process, send) -> None:
    try:
        send(member)
    except psutil.NoSuchProcess:
        pass


def deployment_env(flwr_home: Path) -> dict[str, str]:
    """Return the environment of the test's Flower processes: quiet, offline, and as many threads as this one.

    The ClientApps must use the thread count of the in-process run they are compared with, because
    CPU kernels split their sums by thread and the adapters would then differ in the last bits.
    """
    threads = str(torch.get_num_threads())
    return {**flower_env(), "FLWR_HOME": str(flwr_home), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


__all__ = ["Deployment", "deployment_env", "free_port", "write_certificates", "write_node_keys"]
