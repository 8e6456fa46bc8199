"""
Adds the C{jsonproto-tls:} server endpoint (mutual TLS, reloadable certificates) to
Twisted's endpoint strings.  The parser imports OpenSSL only when used.
"""

from jsonproto.server.tls import TLSServerParser

tlsServer = TLSServerParser()
