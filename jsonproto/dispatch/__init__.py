"""
From a decoded message to its reply: the L{Dispatcher} that routes by
C{type}, the counters it keeps, a bounded thread pool for blocking handlers,
and the seed's own message types.
"""
