"""Domain primitives shared by every zone.

Imports nothing from the project (an import-linter contract checks it).
"""
