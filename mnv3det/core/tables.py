"""Results as json and as a pandas DataFrame: the `.to_json()` / `.to_df()` of every Python API result.

pandas is not a dependency of mnv3det: `.to_df()` imports it when called and says how to get it when it is
missing (`.to_json()` always works).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from mnv3det.errors import UserError


def json_safe(value: Any) -> Any:
    """Plain json values: NaN/inf -> None, Paths -> str, numpy scalars and arrays -> numbers and lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(payload: Any, indent: int | None = None) -> str:
    """`payload` (dicts, lists, numbers, Paths, arrays) as a json string."""
    return json.dumps(json_safe(payload), indent=indent)


def to_dataframe(rows: Sequence[dict[str, Any]], columns: Sequence[str], what: str) -> Any:
    """A pandas DataFrame of `rows` with `columns` (in that order; an empty frame keeps them)."""
    try:
        import pandas as pd
    except ImportError:
        raise UserError(f"{what}.to_df() needs pandas, which is not installed: pip install pandas "
                        f"(or use {what}.to_json())") from None
    return pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=list(columns))
