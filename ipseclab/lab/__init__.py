"""The Mininet lab: topology files, networks built from them, scenarios with steps and checks.

Modules: ``topology`` (load and check topology YAML), ``network`` (build and tear down with
Mininet; gateway launchers), ``capture`` (tcpdump per link, pcap reading), ``scenario`` and
``runner`` (scenario files and running them), ``api`` (the ``Lab`` context manager),
``cleanup`` (remove what runs leave), ``doctor`` (what this machine lacks).
"""
