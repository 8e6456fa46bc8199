"""
Adds the C{jsonproto-tls:} server endpoint (mutual TLS, reloadable certificates, ALPN,
cipher profiles, session tickets) to Twisted's endpoint strings.  The parser imports
OpenSSL only when used.
"""

from jsonproto.server.tls import TLSServerParser

tlsServer = TLSServerParser()
