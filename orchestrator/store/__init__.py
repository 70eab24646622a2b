"""DynamoDB storage: key schema and item codecs (`codec`), the request for every
state change with its condition (`requests`), and the synchronous store used by
the API, the sweeper and tests (`sync`). The worker's asyncio store
(`worker/_store.py`) sends the same requests through aioboto3."""

from .sync import Store

__all__ = ["Store"]
