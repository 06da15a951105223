"""Server-drawn SVG charts (gateway/http/charts.py): well-formed, named for
assistive technology, hostile names escaped, the same figures as a table."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from gateway.http.charts import Series, axis_top, bar_chart, line_chart, nice_ceiling

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(("value", "top"), [(0, 1), (0.3, 0.5), (1, 1), (1.01, 2), (3, 5),
                                            (7, 10), (12, 20), (999, 1000)])
def test_nice_ceiling__rounds_up_to_1_2_5(value: float, top: float) -> None:
    assert nice_ceiling(value) == top


@pytest.mark.parametrize(("values", "whole", "top"), [
    ([], True, 4), ([1], True, 4), ([3], True, 4), ([5], True, 8), ([17], True, 20),
    ([0.3], False, 0.4)])
def test_axis_top__whole_steps_for_counts(values: list[float], whole: bool,
                                          top: float) -> None:
    assert axis_top(values, whole=whole) == pytest.approx(top)


def test_bar_chart__named_escaped_and_tabled() -> None:
    chart = bar_chart("c1", "Backlog <per> queue", "Open & waiting", ["a&b", "<script>"],
                      [Series("Open", [3, None]), Series("Late", [1, 2])],
                      first_column="Queue")
    root = ET.fromstring(str(chart.svg))  # well-formed XML, so nothing unescaped
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "c1-t c1-d"
    assert root.find(f"{SVG}title").text == "Backlog <per> queue"
    assert root.find(f"{SVG}desc").text == "Open & waiting"
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    # The None is not drawn; each bar says what it is.
    assert [r.find(f"{SVG}title").text for r in bars] == [
        "a&b, Open: 3", "a&b, Late: 1", "<script>, Late: 2"]
    assert "<script>" not in str(chart.svg)
    assert chart.header == ("Queue", "Open", "Late")
    assert chart.rows == (("a&b", "3", "1"), ("<script>", "–", "2"))


def test_bar_chart__heights_scale_to_the_axis() -> None:
    chart = bar_chart("c2", "t", "d", ["x", "y"], [Series("%", [100, 50])], unit="%", top=100)
    root = ET.fromstring(str(chart.svg))
    heights = [float(r.get("height")) for r in root.iter(f"{SVG}rect")
               if r.find(f"{SVG}title") is not None]
    assert heights[0] == pytest.approx(2 * heights[1]) and heights[0] > 100


def test_line_chart__a_point_per_figure_with_short_axis_labels() -> None:
    days = ["2026-12-01", "2026-12-02", "2026-12-03"]
    chart = line_chart("c3", "Flow", "d", days, [Series("Created", [1, 0, 4]),
                                                 Series("Resolved", [0, None, 2])],
                       axis_labels=[d[5:] for d in days])
    root = ET.fromstring(str(chart.svg))
    assert len(list(root.iter(f"{SVG}circle"))) == 5
    lines = list(root.iter(f"{SVG}polyline"))
    # Told apart by more than colour: the second series is dashed.
    assert lines[0].get("stroke-dasharray") == "" and lines[1].get("stroke-dasharray")
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "12-01" in labels and "2026-12-01" not in labels
    assert chart.rows[1] == ("2026-12-02", "0", "–")
