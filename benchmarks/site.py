"""mkdocs hook (``hooks:`` in mkdocs.yml): the site's benchmark results page is rendered from the
committed records at build time, and the benchmarks' figures are served beside it."""

from __future__ import annotations

from mkdocs.structure.files import File, Files

from benchmarks.results import HERE, ROOT, load_records, render

RESULTS = "benchmarks/results.md"  # the generated page, inside the site


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, RESULTS, content=render(load_records(), ROOT / RESULTS)))
    for figure in sorted((HERE / "figures").glob("*.png")):
        files.append(File(str(figure.relative_to(ROOT)), str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
