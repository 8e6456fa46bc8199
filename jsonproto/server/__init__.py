"""
The server side on Twisted: the protocols that carry messages over a
connection, the lifecycle and registry of connections, the factory, echo,
and the TLS endpoint.
"""
