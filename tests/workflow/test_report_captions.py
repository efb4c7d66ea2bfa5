"""Every figure a rule writes goes into `snakemake --report` with a caption (STYLE: one
`workflow/report/<figure>.rst` per reported output), and every caption file is used.

A registry check on the rule files' text, so it runs in a second without a DAG: a new figure
rule without `report(...)`, a caption path that points nowhere, or a caption left behind by a
removed figure fails here.
"""

import re

import pytest

from tests.workflow.runner import REPO

RULES = REPO / "workflow/rules"
CAPTION = re.compile(r'caption="(\.\./report/[\w.]+\.rst)"')


def figure_outputs(path):
    """(line number, line, wrapped in report(...)) of every `results/figures/...{FIG}` path in
    an `output:` section of a rule file."""
    found, section, lines = [], None, path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        indent = len(line) - len(line.lstrip())
        if line.strip() == "output:":
            section = indent
            continue
        if section is not None and line.strip() and indent <= section:
            section = None
        if section is not None and '"results/figures/' in line and "{FIG}" in line:
            previous = next(lines[i] for i in range(number - 2, -1, -1) if lines[i].strip())
            found.append((number, line.strip(), previous.rstrip().endswith("report(")))
    return found


@pytest.mark.parametrize("path", sorted(RULES.glob("*.smk")), ids=lambda p: p.name)
def test_every_figure_output_is_reported_with_a_caption_that_exists(path):
    unreported = [(n, line) for n, line, wrapped in figure_outputs(path) if not wrapped]
    assert not unreported, f"{path.name}: figure outputs without report(...): {unreported}"
    for caption in CAPTION.findall(path.read_text()):
        assert (RULES / caption).resolve().is_file(), f"{path.name}: {caption} does not exist"


def test_the_identify_and_development_figures_are_among_them():
    names = {path.name: [line for _, line, _ in figure_outputs(path)] for path in RULES.glob("*.smk")}
    assert len(names["identify.smk"]) == 5 and len(names["development.smk"]) == 3


def test_every_caption_file_is_used():
    text = "".join(p.read_text() for p in [*RULES.glob("*.smk"), REPO / "Snakefile"])
    unused = [p.name for p in sorted((REPO / "workflow/report").glob("*.rst"))
              if f"report/{p.name}" not in text]
    assert not unused, f"caption files no rule reports: {unused}"
