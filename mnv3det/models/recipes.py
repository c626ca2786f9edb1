"""Finding and reading model recipes (yaml graphs).

A recipe is named by a file stem under recipes/ (`mnv3-small`), a path to a yaml file, or an
already-parsed dict. In an installed wheel recipes/ ships as the package `mnv3det.recipes`; in an
editable checkout it is <repo>/recipes, used as the fall-back.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any


from mnv3det.core.yamlio import read_yaml
from mnv3det.errors import UserError

# `--backbone small|large` picks one of these recipes.
BACKBONE_RECIPES: dict[str, str] = {"small": "mnv3-small", "large": "mnv3-large"}

_CHECKOUT_RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def recipes_dir() -> Path:
    """The folder that holds the shipped recipes (package data first, then the checkout)."""
    try:
        spec = importlib.util.find_spec("mnv3det.recipes")
    except ModuleNotFoundError:
        spec = None
    # submodule_search_locations covers both a regular and a namespace package (no __init__.py)
    for location in (spec.submodule_search_locations or []) if spec else []:
        if any(Path(location).glob("*.yaml")):
            return Path(location)
    return _CHECKOUT_RECIPES


def available_recipes() -> list[str]:
    """Names of the model recipes (hyp*.yaml files hold training hyperparameters, not models)."""
    return sorted(p.stem for p in recipes_dir().glob("*.yaml") if not p.stem.startswith("hyp"))


def recipe_for_backbone(backbone: str) -> str:
    """'small' -> 'mnv3-small', 'large' -> 'mnv3-large'; anything else is a UserError."""
    try:
        return BACKBONE_RECIPES[backbone.lower()]
    except KeyError:
        raise UserError(
            f"--backbone {backbone!r} is not known; use one of {', '.join(BACKBONE_RECIPES)} "
            "(or --recipe NAME|PATH for any other graph)"
        ) from None


def load_recipe(recipe: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Return (a deep copy of the recipe dict, a label for error messages)."""
    if isinstance(recipe, dict):
        return copy.deepcopy(recipe), "<recipe dict>"
    path = Path(recipe)
    if path.suffix not in (".yaml", ".yml") and not path.is_file():
        named = recipes_dir() / f"{recipe}.yaml"
        if not named.is_file():
            raise UserError(
                f"recipe {str(recipe)!r} not found: it is neither a yaml file nor one of the shipped recipes "
                f"({', '.join(available_recipes())}). Pass one of those names or the path of a .yaml graph."
            )
        path = named
    if not path.is_file():
        raise UserError(f"recipe file {path} does not exist; check the path or use one of: "
                        f"{', '.join(available_recipes())}")
    data = read_yaml(path, "recipe")  # one line with line and column for a syntax error
    if not isinstance(data, dict):
        raise UserError(f"recipe {path} must be a yaml mapping with nc, anchors, backbone and head keys")
    return data, str(path)
