"""The teaching layer: byte maps, overhead plots, plain-language explanations, Scapy glue.

Everything here works on real packets built or received by :mod:`ipseclab.ipsec`, never on
formulas or drawings made by hand, so what a notebook shows is what goes on the wire.
"""
