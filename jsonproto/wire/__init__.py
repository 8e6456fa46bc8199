"""
The bytes on the wire: framing (cutting a stream into messages, and framing
replies) and the codec (strict JSON in and out).  Nothing here knows of
Twisted or of connections.
"""
