"""
The per-connection message pipeline and its compiled twin.
"""
