"""The containers of one verification run: started or created from any thread, all removed at the end.

Containers carry a per-run label and are removed in a ``finally`` (and swept by that label), so a
failing check, a crash, Ctrl-C or SIGTERM never leaves one behind. They also carry
``io.imgforge.owner`` (``IMGFORGE_OWNER``, else the run id), so whoever started imgforge can clean up
after a killed process by that label alone, without touching anyone else's containers on a shared
engine. testcontainers' Ryuk reaper is left to the environment (``TESTCONTAINERS_RYUK_DISABLED``).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
import requests.exceptions
from testcontainers.core.container import DockerContainer

from imgforge.errors import DockerError
from imgforge.verify.http import LOOPBACK, Http

RUN_LABEL = "io.imgforge.verify.run"
OWNER_LABEL = "io.imgforge.owner"  # value: $IMGFORGE_OWNER (./example.sh and ./test.sh set it), else the run id
START_TIMEOUT = 10.0  # seconds for nginx to answer after the container starts
POLL = 0.02


class Cancelled(Exception):
    """Another thread asked the run to stop (Ctrl-C, SIGTERM): leave polling loops at once."""


class Fleet:
    """The containers of one run: started from any thread, all removed by ``remove_all``."""

    def __init__(self, client: docker.DockerClient, image_id: str, cancel: threading.Event):
        self.client = client
        self.image_id = image_id
        self.cancel = cancel
        self.run_id = uuid.uuid4().hex[:12]
        self.labels = {RUN_LABEL: self.run_id, OWNER_LABEL: os.environ.get("IMGFORGE_OWNER") or self.run_id}
        self._started: list[DockerContainer] = []
        self._created: list[str] = []  # never started: files are read out of them
        self._lock = threading.Lock()

    def start(
        self,
        role: str,
        *,
        user: str,
        ports: tuple[int, ...] = (),
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        **extra: Any,
    ) -> DockerContainer:
        self.check_cancel()
        container = DockerContainer(self.image_id, command=command).with_kwargs(  # type: ignore[arg-type]  # docker-py takes a list
            user=user, read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"], labels=self.labels, **extra
        )
        container.with_name(f"imgforge-verify-{self.run_id}-{role}").with_tmpfs_mount("/tmp")
        for key, value in (env or {}).items():
            container.with_env(key, value)
        for port in ports:
            # docker-py's (host_ip,) binding: a free port on loopback only, never on 0.0.0.0.
            container.ports[f"{port}/tcp"] = (LOOPBACK,)  # type: ignore[assignment]  # typed as a port number only
        with self._lock:
            self._started.append(container)
        container.start()
        return container

    def create(self, role: str, command: list[str]) -> str:
        """A container that is never started (files are read out of it): its id, removed with the run."""
        self.check_cancel()
        created = self.client.api.create_container(
            self.image_id,
            command=command,
            labels=self.labels,
            name=f"imgforge-verify-{self.run_id}-{role}",
            network_disabled=True,
        )
        cid: str = created["Id"]
        with self._lock:
            self._created.append(cid)
        return cid

    def clients(self, container: DockerContainer, ports: tuple[int, ...], timeout: float = 3.0) -> list[Http] | str:
        """HTTP clients for the published ports, or why there are none (the container already exited)."""
        out = []
        for port in ports:
            bindings = self.client.api.port(container.get_container_id(), port) or []
            host_port = next((int(b["HostPort"]) for b in bindings if b.get("HostIp") == LOOPBACK), None)
            if host_port is None:
                if exited := self.exited(container):
                    return exited
                raise DockerError(f"port {port} of the test container is not published on {LOOPBACK}")
            out.append(Http(host_port, timeout))
        return out

    def wait_http(
        self,
        container: DockerContainer,
        web: Http,
        timeout: float = START_TIMEOUT,
        give_up: Callable[[], bool] = lambda: False,
    ) -> str | None:
        """None once nginx answers anything over HTTP; else why not (exited, timed out)."""
        deadline = time.monotonic() + timeout
        tries = 0
        while True:
            self.check_cancel()
            try:
                web.get("/")
            except (OSError, http.client.HTTPException):  # refused, reset or cut off while coming up
                pass
            else:
                return None
            tries += 1
            if tries % 10 == 0 and (exited := self.exited(container)):
                return exited
            if give_up():
                return "gave up waiting"
            if time.monotonic() > deadline:
                return f"no HTTP answer within {timeout:.0f} s: {self.log_tail(container)}"
            time.sleep(POLL)

    def state(self, container: DockerContainer) -> dict[str, Any]:
        inspected = self.client.api.inspect_container(container.get_container_id())
        state: dict[str, Any] = inspected.get("State") or {}
        return state

    def exited(self, container: DockerContainer) -> str | None:
        state = self.state(container)
        if state.get("Running"):
            return None
        return f"the container exited with code {state.get('ExitCode')}: {self.log_tail(container)}"

    def logs(self, container: DockerContainer) -> str:
        raw: bytes = self.client.api.logs(container.get_container_id(), stdout=True, stderr=True)
        return raw.decode("utf-8", "replace")

    def log_tail(self, container: DockerContainer, lines: int = 3) -> str:
        tail = [line for line in self.logs(container).splitlines() if line.strip()][-lines:]
        return " | ".join(tail) or "(no log output)"

    def discard(self, container: DockerContainer) -> None:
        """Remove a container as soon as its scenario is done, in that scenario's thread."""
        with self._lock:
            if container not in self._started:
                return
            self._started.remove(container)
        self.remove(container.get_container_id())
        with contextlib.suppress(Exception):
            container.get_docker_client().client.close()

    def remove(self, cid: str, timeout: float = 15.0) -> None:
        """Force-remove and wait until the engine no longer knows the container.

        The engine can answer 409 "removal already in progress" (or return before a slow kill
        finishes under load): only an inspect that says 404 proves the container is gone.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.api.remove_container(cid, force=True, v=True)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as e:
                if e.status_code != 409:
                    raise
            try:
                self.client.api.inspect_container(cid)
            except docker.errors.NotFound:
                return
            if time.monotonic() > deadline:
                raise DockerError(f"test container {cid[:12]} could not be removed within {timeout:.0f} s")
            time.sleep(0.05)

    def remove_all(self) -> None:
        """Remove every container of this run, even when interrupted again while doing so."""
        interrupted: BaseException | None = None
        with self._lock:
            started, self._started = self._started, []
            created, self._created = self._created, []
        ids = {c._container.id for c in started if c._container is not None and c._container.id} | set(created)
        with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
            ids |= {
                c["Id"] for c in self.client.api.containers(all=True, filters={"label": f"{RUN_LABEL}={self.run_id}"})
            }
        for cid in ids:
            while True:
                try:
                    self.remove(cid)
                    break
                except (docker.errors.DockerException, requests.exceptions.RequestException, DockerError):
                    break  # engine gone or stuck: nothing more we can do from here
                except KeyboardInterrupt as e:  # finish cleaning up first, then honour it
                    interrupted = e
        for container in started:
            with contextlib.suppress(Exception):
                container.get_docker_client().client.close()
        if interrupted is not None:
            raise interrupted

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()
