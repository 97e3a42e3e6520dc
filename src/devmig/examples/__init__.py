"""Example model documents: a data package, no code.

Each ``<implementation>/<release>.json`` is a complete model document
(``devmig/model-document/1``); ``README.md`` tells each release history.
"""
