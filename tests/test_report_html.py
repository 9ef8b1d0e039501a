"""HTML: one self-contained file that a hostile string cannot turn against its reader."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser

from bastion.catalogue import all_rules
from bastion.findings import Report
from bastion.report.html import render_html

RULES = {rule.id: rule for rule in all_rules()}


class _Tags(HTMLParser):
    """Every start tag with its attributes, as a browser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(text: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    return parser.tags


def test_self_contained(sample_report: Report) -> None:
    text = render_html(sample_report, RULES)
    tags = _tags(text)
    names = {name for name, _ in tags}
    assert "script" not in names
    assert not names & {"img", "link", "iframe", "object", "embed", "base", "form", "svg"}
    assert "<script" not in text.lower()
    reference_urls = {r.url for f in sample_report.findings for r in f.references if r.url}
    for name, attrs in tags:
        assert "src" not in attrs, name
        assert not any(a.startswith("on") for a in attrs), (name, attrs)  # no handlers
        if "href" in attrs:
            assert name == "a"
            assert attrs["href"] in reference_urls  # only links to references
            assert str(attrs["href"]).startswith("https://")
    assert {attrs["href"] for name, attrs in tags if name == "a"} == reference_urls


def test_content_security_policy(sample_report: Report) -> None:
    tags = _tags(render_html(sample_report, RULES))
    csp = [attrs.get("content") for name, attrs in tags
           if name == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"]
    assert len(csp) == 1
    assert "default-src 'none'" in str(csp[0])
    assert "script-src" not in str(csp[0])  # nothing loosens the default


def test_hostile_script_is_escaped(sample_report: Report) -> None:
    text = render_html(sample_report, RULES)
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "\x1b" not in text
    assert "[bold red]x[/]" in text


def test_hostile_file_name_cannot_break_out_of_attributes_or_tags(
    make_report: Callable[..., Report]
) -> None:
    from bastion.findings import Location
    from bastion.rules import UNREADABLE

    name = "\"><img src=x onerror=alert(1)>'.pkl"
    report = make_report([UNREADABLE.finding(Location(path=name), name, evidence=name)])
    text = render_html(report, RULES)
    assert "<img" not in text
    assert all(tag != "img" for tag, _ in _tags(text))
    assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_verdict_counts_and_skipped(sample_report: Report,
                                    make_report: Callable[..., Report]) -> None:
    text = render_html(sample_report, RULES)
    assert "FAILED" in text
    assert "suppressed: known loop, harmless" in text
    assert "1 skipped" in text
    assert "models/pipe" in text
    assert "advisory database is 3 days old" in text
    assert "PASSED" in render_html(make_report(), RULES)
    assert "No findings." in render_html(make_report(), RULES)
