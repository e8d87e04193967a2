"""ipseclab: a hands-on IPsec lab.

ESP (RFC 4303), AH (RFC 4302) and IKEv2 (RFC 7296) written to be read, with Mininet
topologies where emulated gateways run this stack, and notebooks that decode every byte.
The package is layered; each layer imports only from the layers below it:

    crypto -> ipsec -> ike -> drivers -> lab -> teaching -> cli

See docs/architecture.md.
"""

__version__ = "0.1.0"
