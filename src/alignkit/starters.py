"""`alignkit init`: copy a recipe's commented starter config (shipped in alignkit/configs/) to a folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alignkit.errors import AlignkitError


def starter_text(recipe: str) -> str:
    if recipe == "demo_rlaif":  # a fragment that `alignkit demo --rlaif` appends to demo.yaml: give the whole
        from alignkit.demo.pipeline import rlaif_pipeline_text

        return rlaif_pipeline_text()
    source = resources.files("alignkit") / "configs" / f"{recipe}.yaml"
    if not source.is_file():
        names = sorted(p.name.removesuffix(".yaml") for p in (resources.files("alignkit") / "configs").iterdir())
        raise AlignkitError(f"no starter config for {recipe!r}; available: {', '.join(names)}")
    return source.read_text()


def write_starter(recipe: str, directory: Path, force: bool = False) -> Path:
    target = Path(directory) / f"{recipe}.yaml"
    if target.exists() and not force:
        raise AlignkitError(f"{target} exists: pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(starter_text(recipe))
    return target
