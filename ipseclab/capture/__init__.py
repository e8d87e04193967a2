"""Capture files: reading pcap and pcapng, writing pcap, finding the IP packet in a frame."""
