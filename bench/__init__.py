"""
jsonproto's benchmark (C{make bench}): C{bench/run.py} is its command
line; each scenario family is a module of its own.
"""
