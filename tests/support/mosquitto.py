"""Test helpers (no tests here): a real Mosquitto broker on 127.0.0.1, certificates, and a recording subscriber."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def openssl(*args: str) -> None:
    """Run the openssl CLI."""
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass
class Certs:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate, made with the openssl CLI."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, d: Path) -> Certs:
        """Create the files under d."""
        d.mkdir(parents=True, exist_ok=True)
        ca, ca_key = d / "ca.pem", d / "ca.key"
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca),
        )
        for name, ext in (
            ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            ("client", "extendedKeyUsage=clientAuth"),
        ):
            key, csr, cert, extfile = (
                d / f"{name}.key",
                d / f"{name}.csr",
                d / f"{name}.pem",
                d / f"{name}.ext",
            )
            extfile.write_text(ext + "\n")
            openssl(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                f"/CN={name}",
                "-keyout",
                str(key),
                "-out",
                str(csr),
            )
            openssl(
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(ca),
                "-CAkey",
                str(ca_key),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                str(extfile),
                "-out",
                str(cert),
            )
        return cls(ca, d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")


class Broker:
    """mosquitto with its own config file: optional user/password and TLS (client certificate required)."""

    def __init__(self, d: Path, user: tuple[str, str] | None = None, certs: Certs | None = None) -> None:
        if shutil.which("mosquitto") is None:
            pytest.fail("mosquitto is missing: run provisioning/setup-dev.sh --test")
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {d}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to user mosquitto, who cannot read the test's files
        if user is not None:
            pw = d / "passwd"
            pw.write_text("")
            subprocess.run(["mosquitto_passwd", "-b", str(pw), *user], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if certs is not None:
            lines += [
                f"cafile {certs.ca}",
                f"certfile {certs.server_cert}",
                f"keyfile {certs.server_key}",
                "require_certificate true",
            ]
        self.conf = d / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self.start()

    def start(self) -> None:
        """Start and wait until it listens (its own log line says so)."""
        ready = threading.Event()
        self.proc = proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self.log.append(line.rstrip())
                if "Opening ipv4 listen socket" in line or "running" in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(10):
            pytest.fail("mosquitto did not start:\n" + "\n".join(self.log))
        deadline = time.monotonic() + 10
        while True:  # the log line comes just before listen(): confirm with a connection
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("mosquitto does not accept connections:\n" + "\n".join(self.log))
                time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (it saves its persistent sessions) and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@dataclass
class Received:
    """One message as the subscriber saw it."""

    topic: str
    payload: bytes
    retain: bool
    at: float


class Subscriber:
    """A paho client subscribed to '#', recording every message; persistent session so nothing is missed."""

    def __init__(
        self,
        broker: Broker,
        topic: str = "#",
        user: tuple[str, str] | None = None,
        certs: Certs | None = None,
        persistent: bool = False,
        qos: int = 1,
    ) -> None:
        self._qos = qos
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._topic = topic
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-sub-{broker.port}", clean_session=not persistent
        )
        if user is not None:
            self.client.username_pw_set(*user)
        if certs is not None:
            self.client.tls_set(
                ca_certs=str(certs.ca), certfile=str(certs.client_cert), keyfile=str(certs.client_key)
            )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            pytest.fail("test subscriber did not subscribe")

    def _on_connect(
        self, client: paho.Client, userdata: object, flags: object, rc: object, props: object = None
    ) -> None:
        client.subscribe(self._topic, qos=self._qos)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.time()))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Received]:
        """Messages of one topic so far."""
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait(self, check: Callable[[list[Received]], bool], timeout: float = 20.0) -> list[Received]:
        """Block until check(messages) holds; fails on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(
                        f"condition not met within {timeout}s; got {[(m.topic, m.payload[:60]) for m in self.messages]}"
                    )
                self._cond.wait(left)
            return list(self.messages)

    async def until(self, check: Callable[[list[Received]], bool], timeout: float = 20.0) -> list[Received]:
        """`wait` for async tests: blocks a worker thread, not the event loop the agent runs on."""
        return await asyncio.to_thread(self.wait, check, timeout)

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()
