"""Web research tools: search a provider, fetch pages, extract their main text, cite them.

Importing this package is cheap: httpx and trafilatura are imported inside the functions that use
them, so `import utils.tools` stays light for runs that never touch the web.
"""
from __future__ import annotations

from utils.tools.web.research import web_research

WEB_TOOLS = ("web_research",)
TOOLS_HERE = {"web_research": web_research}
