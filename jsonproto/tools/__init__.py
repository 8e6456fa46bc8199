"""
The C{jsonproto} command and what it runs: send, bench, cert.
"""
