"""The helpers every lesson builds its cells with: ``md``, ``code``, ``root_code``,
``cleanup``, and the shared cells ``SETUP`` and ``ROOT_CHECK`` (lessons 02, 06, 07, 09)."""

from __future__ import annotations

from textwrap import dedent

from nbformat.v4 import new_code_cell, new_markdown_cell


def md(text: str):
    return new_markdown_cell(dedent(text).strip())


def code(text: str):
    return new_code_cell(dedent(text).strip())


def root_code(text: str):
    """A code cell that needs root (a lab in network namespaces); tagged so that tests
    without root can leave it out."""
    cell = code(text)
    cell.metadata["tags"] = ["needs-root"]
    return cell


ROOT_CHECK = root_code("""
    import os


    class NeedsRoot(Exception):
        def _render_traceback_(self):  # IPython shows this line instead of a traceback
            return [str(self)]


    if os.geteuid() != 0:
        raise NeedsRoot("This part builds networks in Linux namespaces and needs root: start"
                        " JupyterLab as root ('sudo ipseclab lab'). Nothing was started.")
    print("running as root: the lab can start")
    """)


def cleanup(directory: str, root: bool = False):
    """The lesson's last code cell: its temporary directory (``tempfile.mkdtemp``) goes, once
    everything shown above has been read from it."""
    return (root_code if root else code)(f"""
    import shutil

    # Everything above has been read from {directory}: remove the lesson's temporary files
    # (captures, key logs, configs). To run cells again, run the notebook from the top.
    shutil.rmtree({directory}, ignore_errors=True)
    assert not {directory}.exists()
    print("removed", {directory})
    """)


SETUP = code("""
    %matplotlib inline
    import matplotlib.pyplot as plt
    """)
# For lessons whose figures come back from ipseclab functions and never need pyplot itself.
SETUP_INLINE = code("""
    %matplotlib inline
    """)
