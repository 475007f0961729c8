"""The app shell: settings, the one run function, the terminal display, interactive mode, routing.

Only this layer knows the terminal; it imports from every layer below it.
"""
