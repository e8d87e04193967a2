"""IKEv2 (RFC 7296): message and payload codec, and later the protocol built on it.

The codec (:mod:`.constants`, :mod:`.message`, :mod:`.payloads`) turns datagrams into
dataclasses and back. It knows nothing of SA state or keys: the Encrypted payload (SK,
RFC 7296 §3.14) and the Encrypted Fragment payload (SKF, RFC 7383 §2.5) are carried as
their raw bodies, and :func:`.message.parse_payload_chain` reads the inner payloads once
someone else has decrypted them.
"""
