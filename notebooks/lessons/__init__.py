"""The lessons' cells, one module per notebook, and the helpers they share (``cells``,
``attack_cells``). ``build.py`` and ``build_attacks.py`` load this package by path."""
