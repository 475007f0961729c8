"""The model boundary: the one client, its settings, cache, structured output and the offline model.

Imports only `utils.errors`/`utils.events` from outside itself; never the run machinery or the shell.
"""
