"""
The C{twistd jsonproto} daemon: its options, the service they assemble,
worker processes, metrics and logs.
"""
