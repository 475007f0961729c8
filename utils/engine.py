"""The one place the app imports its node library from.

Why: the app is written against KayGraph's public API, but the `kaygraph` package may be missing
(or unwanted) where the app runs. Everything else imports node/graph classes from here, so the choice
is made once:

- If `import kaygraph` works, its classes are used (`ENGINE_NAME == "kaygraph"`).
- Otherwise the project's own API-compatible core, `utils/kaygraph_core.py`, is used
  (`ENGINE_NAME == "builtin"`).
- Setting the environment variable `ORCH_ENGINE=builtin` forces the builtin core even when kaygraph
  is importable (to compare the two, or to rule the package out when debugging). Any other value,
  or none, means "kaygraph if available".

`ENGINE` is the display string: "kaygraph <version>" (e.g. "kaygraph 0.3.2") or just "builtin";
`ENGINE_NAME` is "kaygraph" or "builtin" and `ENGINE_VERSION` the library version. Tests in
`tests/test_engine.py` pin the behaviour the app relies on, on whichever engine is active.
"""
from __future__ import annotations

import os

__all__ = [
    "ENGINE", "ENGINE_NAME", "ENGINE_VERSION",
    "Config", "BaseNode", "Node", "BatchNode", "ParallelBatchNode", "Graph", "BatchGraph",
    "AsyncNode", "AsyncBatchNode", "AsyncParallelBatchNode", "AsyncGraph", "AsyncBatchGraph",
    "AsyncParallelBatchGraph",
]

_force_builtin = os.environ.get("ORCH_ENGINE", "").strip().lower() == "builtin"

try:
    if _force_builtin:
        raise ImportError("ORCH_ENGINE=builtin")
    import kaygraph as _lib
    from kaygraph import (  # noqa: F401
        AsyncBatchGraph, AsyncBatchNode, AsyncGraph, AsyncNode, AsyncParallelBatchGraph,
        AsyncParallelBatchNode, BaseNode, BatchGraph, BatchNode, Graph, Node, ParallelBatchNode,
    )
    try:
        from kaygraph import Config  # noqa: F401
    except ImportError:  # older releases: the app never needs it, keep the name importable
        from utils.kaygraph_core import Config  # noqa: F401
    ENGINE_NAME = "kaygraph"
    ENGINE_VERSION = str(getattr(_lib, "__version__", "unknown"))
except ImportError:
    from utils import kaygraph_core as _lib
    from utils.kaygraph_core import (  # noqa: F401
        AsyncBatchGraph, AsyncBatchNode, AsyncGraph, AsyncNode, AsyncParallelBatchGraph,
        AsyncParallelBatchNode, BaseNode, BatchGraph, BatchNode, Config, Graph, Node,
        ParallelBatchNode,
    )
    ENGINE_NAME = "builtin"
    ENGINE_VERSION = _lib.__version__

ENGINE = f"kaygraph {ENGINE_VERSION}" if ENGINE_NAME == "kaygraph" else "builtin"
