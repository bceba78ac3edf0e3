"""One HTTP server for any text env, and both ends of its wire.

- :func:`create_app` builds the FastAPI app (``palaestra serve`` runs it).
- :class:`RemoteEnv` is a synchronous gymnasium env over HTTP.
- :class:`AsyncEnvClient` drives many sessions concurrently from asyncio.
"""

from palaestra.envs.registration import set_remote_factory
from palaestra.servers.app import create_app
from palaestra.servers.async_client import AsyncEnvClient, AsyncSession
from palaestra.servers.local import serve_in_thread
from palaestra.servers.protocol import RetryPolicy, Step, Timeouts
from palaestra.servers.remote_env import RemoteEnv
from palaestra.servers.sessions import Settings

__all__ = [
    "AsyncEnvClient",
    "AsyncSession",
    "RemoteEnv",
    "RetryPolicy",
    "Settings",
    "Step",
    "Timeouts",
    "create_app",
    "serve_in_thread",
]

# With this, `gymnasium.make(env_id, base_url=...)` builds a RemoteEnv.
set_remote_factory(RemoteEnv)
