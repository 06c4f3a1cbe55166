"""A real etcd + kube-apiserver on loopback, started the way envtest does.

The binaries come from ``hack/build-control-plane.sh`` (built from the Go module proxy
and cached outside the repository). The API server runs with RBAC authorization; the
harness makes its own CA, a serving certificate and an admin client certificate
(O=system:masters), and writes a kubeconfig for it.

Run ``python -m tests.harness.controlplane up DIR`` to start one and leave it running
(the demo does), ``down DIR`` to stop it.
"""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.harness.processes import stop_recorded

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cached_by(script: str) -> Path:
    """Runs a hack/ script that builds or fetches something into the cache on first use;
    returns the directory it prints last."""
    out = subprocess.run(
        ["bash", str(REPO / "hack" / script)], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def binaries() -> Path:
    """Builds the control-plane binaries on first use; returns their directory."""
    return cached_by("build-control-plane.sh")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3",
        "-keyout",
        str(pki / "ca.key"),
        "-out",
        str(pki / "ca.crt"),
        "-subj",
        "/CN=kvbackup-test-ca",
    )
    ext = pki / "serving.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    for name, subject, extfile in (
        ("apiserver", "/CN=kube-apiserver", ext),
        ("admin", "/O=system:masters/CN=kvbackup-admin", None),
    ):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(pki / f"{name}.key"),
            "-out",
            str(pki / f"{name}.csr"),
            "-subj",
            subject,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            str(pki / f"{name}.csr"),
            "-CA",
            str(pki / "ca.crt"),
            "-CAkey",
            str(pki / "ca.key"),
            "-CAcreateserial",
            "-days",
            "3",
            "-out",
            str(pki / f"{name}.crt"),
            *(("-extfile", str(extfile)) if extfile else ()),
        )
    _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
    _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def write_kubeconfig(path: Path, server: str, pki: Path, user: str = "admin") -> None:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {server}
    certificate-authority: {pki / "ca.crt"}
users:
- name: {user}
  user:
    client-certificate: {pki / f"{user}.crt"}
    client-key: {pki / f"{user}.key"}
contexts:
- name: local
  context: {{cluster: local, user: {user}}}
current-context: local
"""
    )


@dataclass
class ControlPlane:
    workdir: Path
    bin_dir: Path
    server: str
    kubeconfig: Path
    processes: list[subprocess.Popen[bytes]]
    #: How the API server (the last of ``processes``) was started, to start it again.
    api_server_command: tuple[str, ...] = ()

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
        )

    @property
    def api_server_port(self) -> int:
        return int(self.server.rsplit(":", 1)[1])

    def kubeconfig_via(self, port: int, path: Path) -> Path:
        """A kubeconfig at ``path`` that reaches the API server through loopback ``port``
        (a forwarder's), with the same certificates."""
        path.write_text(
            self.kubeconfig.read_text().replace(self.server, f"https://127.0.0.1:{port}")
        )
        return path

    def stop_api_server(self) -> None:
        """Stops the API server alone, as an outage would; etcd keeps the cluster's state."""
        _terminate(self.processes[-1])

    def start_api_server(self) -> None:
        """Starts the API server again, on the same port with the same certificates."""
        log = (self.workdir / "logs" / "kube-apiserver.log").open("ab")
        self.processes[-1] = subprocess.Popen(
            self.api_server_command, stdout=log, stderr=subprocess.STDOUT
        )
        _wait_ready(self.server, self.workdir / "pki")
        self._record_pids()

    def _record_pids(self) -> None:
        (self.workdir / "pids").write_text(" ".join(str(p.pid) for p in self.processes))

    def stop(self) -> None:
        for process in reversed(self.processes):
            _terminate(process)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: str, pki: Path, deadline_s: float = 120) -> None:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    deadline = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{server}/readyz", context=context, timeout=5) as reply:
                if reply.status == 200:
                    return
        except Exception as error:  # not up yet
            last = error
        time.sleep(0.5)
    raise RuntimeError(f"kube-apiserver at {server} did not become ready: {last}")


def start(workdir: Path) -> ControlPlane:
    bin_dir = binaries()
    workdir.mkdir(parents=True, exist_ok=True)
    pki = workdir / "pki"
    make_pki(pki)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    processes: list[subprocess.Popen[bytes]] = []
    processes.append(
        subprocess.Popen(
            [
                str(bin_dir / "etcd"),
                "--data-dir",
                str(workdir / "etcd"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
            ],
            stdout=(logs / "etcd.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
    )
    server = f"https://127.0.0.1:{api_port}"
    api_server_command = (
        str(bin_dir / "kube-apiserver"),
        "--etcd-servers",
        etcd_url,
        "--bind-address",
        "127.0.0.1",
        "--advertise-address",
        "127.0.0.1",
        "--secure-port",
        str(api_port),
        "--cert-dir",
        str(workdir / "apiserver-certs"),
        "--tls-cert-file",
        str(pki / "apiserver.crt"),
        "--tls-private-key-file",
        str(pki / "apiserver.key"),
        "--client-ca-file",
        str(pki / "ca.crt"),
        "--service-account-issuer",
        "https://kubernetes.default.svc",
        "--service-account-key-file",
        str(pki / "sa.pub"),
        "--service-account-signing-key-file",
        str(pki / "sa.key"),
        "--service-cluster-ip-range",
        "10.0.0.0/24",
        "--authorization-mode",
        "RBAC",
        "--allow-privileged=true",
        "--disable-admission-plugins",
        "ServiceAccount",
    )
    processes.append(
        subprocess.Popen(
            api_server_command,
            stdout=(logs / "kube-apiserver.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
    )
    plane = ControlPlane(
        workdir, bin_dir, server, workdir / "kubeconfig", processes, api_server_command
    )
    try:
        _wait_ready(server, pki)
    except Exception:
        plane.stop()
        raise
    write_kubeconfig(plane.kubeconfig, server, pki)
    plane._record_pids()
    return plane


def install_crds(plane: ControlPlane) -> None:
    plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/keybackups.kvbackup.io",
        "crd/keyrestores.kvbackup.io",
    )
    # Established is not yet served: for some seconds more, lists answer 429 "storage is
    # (re)initializing", which an operator started at once logs as errors. kubectl waits
    # through those answers.
    plane.kubectl("get", "keybackups,keyrestores", "--all-namespaces", "--request-timeout=60s")


def main(argv: list[str]) -> None:
    command, workdir = argv[1], Path(argv[2]).resolve()
    if command == "up":
        plane = start(workdir)
        install_crds(plane)
        print(plane.kubeconfig)
    elif command == "down":
        # The API server first: stopped after etcd, it would hang on the dead etcd.
        stop_recorded(workdir / "pids")
    else:
        raise SystemExit(f"usage: {argv[0]} up|down DIR")


if __name__ == "__main__":
    main(sys.argv)
