"""Fixtures that run the real `portcullis` binary for the official OpenAI SDK tests.

PORTCULLIS_BIN points at the binary (scripts/test builds it). Each gateway gets its own
temporary SQLite store and spool, a fresh key, and a free loopback port.
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

BIN = os.environ.get("PORTCULLIS_BIN", "target/release/portcullis")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited early with {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout}s")


class Gateway:
    """A running gateway: its base URL, a valid key and its temp dir."""

    def __init__(self, extra_args=(), config_text=None, env=None):
        self.dir = tempfile.mkdtemp(prefix="portcullis-sdk-")
        self.store = f"sqlite://{self.dir}/gw.db"
        args = [BIN, "serve", "--store", self.store]
        if config_text is not None:
            cfg = os.path.join(self.dir, "gw.toml")
            with open(cfg, "w") as f:
                f.write(config_text.replace("{dir}", self.dir))
            args += ["--config", cfg]
            self.config = cfg
        else:
            self.config = None
        self.key = self.create_key("alice", team="research")
        self.port = free_port()
        args += ["--listen", f"127.0.0.1:{self.port}", *extra_args]
        full_env = dict(os.environ, PORTCULLIS_LOG="warn")
        full_env.update(env or {})
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=full_env, cwd=self.dir)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        wait_ready(f"http://127.0.0.1:{self.port}/healthz", self.proc)

    def create_key(self, user, team=None, extra=()):
        args = [BIN, "keys", "create", "--user", user, "--store", self.store, *extra]
        if team:
            args += ["--team", team]
        if getattr(self, "config", None):
            args += ["--config", self.config]
        out = subprocess.run(args, check=True, capture_output=True, text=True)
        return out.stdout.strip().splitlines()[-1]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        """Stops the gateway and removes its temp dir (store, config, spool)."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class MockUpstream:
    """A standalone `portcullis mock-upstream` process."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([BIN, "mock-upstream", "--listen", f"127.0.0.1:{self.port}"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{self.port}/v1"
        wait_ready(f"http://127.0.0.1:{self.port}/v1/models", self.proc)

    def requests(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_mock/requests") as r:
            return json.load(r)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def upstream():
    u = MockUpstream()
    yield u
    u.stop()


@pytest.fixture(scope="session")
def gateway(upstream):
    g = Gateway(extra_args=["--upstream", upstream.url], env={"OPENAI_API_KEY": "sk-provider-secret"})
    yield g
    g.close()


@pytest.fixture()
def make_gateway():
    started = []

    def make(**kw):
        g = Gateway(**kw)
        started.append(g)
        return g

    yield make
    for g in started:
        g.close()
