"""The run machinery: plan, plan edits, scheduler, context, assembly, specs, run store, output models.

Imports the model boundary and tools from below, never the shell (`utils.app`).
"""
