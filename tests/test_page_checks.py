"""The page rule of the browser test (tests/page_checks.py) catches each kind of machinery, on cells in
the markup Jupyter Book writes, and passes a clean page. Fast: no build, no browser."""
import pytest

from page_checks import machinery


def _cell(source: str, output: str = "", tags=()) -> str:
    classes = " ".join(["cell", *(f"tag_{t}" for t in tags), "docutils", "container"])
    out = f'<div class="cell_output docutils container">{output}</div>' if output else ""
    return (f'<div class="{classes}"><div class="cell_input docutils container"><div class="highlight-ipython3 '
            f'notranslate"><div class="highlight"><pre><span></span>{source}</pre></div></div></div>{out}</div>')


def _output(kind: str, text: str) -> str:
    return (f'<div class="output {kind} highlight-myst-ansi notranslate"><div class="highlight"><pre><span></span>'
            f'{text}</pre></div></div>')


def _page(*cells: str) -> str:
    return (f"<html><head><script>function f() {{ /* Traceback handling of a theme */ }}</script></head><body>"
            f"<section><h1>Tiny</h1><p>The essay's text.</p>{''.join(cells)}</section></body></html>")


CLEAN = _cell("ch.check(&quot;loss-falls&quot;, passed=True)", '<div class="output text_html"><blockquote>'
              "<p><strong>✅ check</strong> <code>loss-falls</code></p></blockquote></div>")

SHOWN = {
    "source parameters cell": (_cell("profile = &quot;smoke&quot;\nseed = 0", tags=["parameters"]), "parameters"),
    "injected parameters cell": (_cell("# Parameters\nprofile = &quot;smoke&quot;\nseed = 0\n",
                                       tags=["injected-parameters"]), "injected-parameters"),
    "untagged injected cell": (_cell("# Parameters\nprofile = &quot;smoke&quot;\n"), "papermill"),
    "library warning": (_cell("import transformers", _output(
        "stderr", "/x/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please update jupyter and ipywidgets.")),
        "TqdmWarning"),
    "claim repr": (_cell("ch.finding(...)", _output(
        "text_plain", "Claim(chapter=&#x27;generality&#x27;, name=&#x27;kl&#x27;, kind=&#x27;finding&#x27;)")),
        "Claim(chapter="),
    "object repr": (_cell("x", _output("text_plain", "&lt;decoupling.core.models.Thing object at 0x7f3a2c&gt;")),
                    "object at 0x"),
    "matplotlib repr": (_cell("ax.plot(y)", _output("text_plain", "[&lt;matplotlib.lines.Line2D at 0x7f&gt;]")),
                        "matplotlib"),
    "printed config": (_cell("print(cfg)", _output("stream", "TrainConfig(steps=50, lr=0.1)")), "TrainConfig("),
    "error output": (_cell("1/0", _output("traceback", "ZeroDivisionError: division by zero")), "error output"),
    "traceback text": (_cell("run()", _output("stream", "Traceback (most recent call last):")), "Traceback"),
}


def test_a_clean_page_passes():
    assert machinery(_page(CLEAN)) == []


@pytest.mark.parametrize("case", SHOWN, ids=list(SHOWN))
def test_machinery_on_a_page_is_found(case):
    cell, word = SHOWN[case]
    found = machinery(_page(CLEAN, cell))
    assert found and any(word in f for f in found), found
