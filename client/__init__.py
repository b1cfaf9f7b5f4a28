"""The HTTP client for services that store and read records in domicile.

```python
from domicile.client import Client, SubjectNotFound

with Client("http://127.0.0.1:8000", api_key=KEY) as dc:
    dc.register("ivan.petrov", "RU")                       # Registration(shard="ru-msk-1", …)
    meta = dc.put_record("ivan.petrov", "profile", "main", {"city": "Kazan"})
    dc.put_record("ivan.petrov", "profile", "main", {"city": "Moscow"}, if_match=meta.version)
    for record in dc.list_records("ivan.petrov"):
        print(record.key, record.data)
```

``AsyncClient`` has the same methods as coroutines. Results are frozen dataclasses with the
contract's field names; an error answer raises the class of its code (``errors``), each with
``.code`` and ``.status``; 503 answers with ``Retry-After`` are retried (``Retry``). Only httpx
is imported: none of the server's packages.
"""

from __future__ import annotations

from domicile.client import errors
from domicile.client.asynchronous import AsyncClient
from domicile.client.errors import *  # noqa: F403 (one class per error code)
from domicile.client.results import (
    Export,
    ExportedRecord,
    Lookup,
    Placement,
    Record,
    RecordMeta,
    RecordPage,
    Registration,
)
from domicile.client.retry import DEFAULT_RETRY, NO_RETRY, Retry
from domicile.client.sync import Client

__all__ = [
    "DEFAULT_RETRY",
    "NO_RETRY",
    "AsyncClient",
    "Client",
    "Export",
    "ExportedRecord",
    "Lookup",
    "Placement",
    "Record",
    "RecordMeta",
    "RecordPage",
    "Registration",
    "Retry",
    "errors",
]
__all__ += errors.__all__
