"""Not a package: a clear error for `import mnv3det` run from the folder that holds this clone.

Python looks for imports in the script's own folder first. A script next to a clone named `mnv3det/` therefore
finds this folder, not the installed package (pip's editable install is found only after that folder), and
without this file Python would import it as an empty namespace package: "module 'mnv3det' has no attribute
'load'". This file turns that into one line saying what happened and what to do. It is not part of the wheel
(pyproject.toml lists the packages), and `import mnv3det` from anywhere else never reaches it.
"""

from pathlib import Path as _Path

_CLONE = _Path(__file__).resolve().parent
if __name__ == "mnv3det" and (_CLONE / "mnv3det" / "__init__.py").is_file():
    raise ImportError(
        f"`import mnv3det` found the clone folder {_Path(__file__).parent}, not the mnv3det package, because the "
        f"script runs from the folder that holds the clone ({_Path(__file__).parent.parent}). Run it from another "
        "folder (for example inside the clone), or move the script."
    )
