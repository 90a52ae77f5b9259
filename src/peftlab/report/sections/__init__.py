"""The report's sections, one module each, in page order: recommendation, leaderboard, evaluations,
curves, pareto, health, classes, outputs, config, environment, metrics (plus `header`, the title bar
and menu above them).

Every section module has the same shape:

    ID, TITLE                       # the section's id (tests, CSS and JS read it) and menu entry
    view(data, ...) -> View | None  # what it shows, as plain data; None: not shown in this report
    render(view) -> str             # the <section> markup of that view, nothing computed

`view` reads the collected runs (`report.collect.ReportData`; scores are computed there,
once) and whatever else it needs as plain arguments; `render` only writes markup, so a section
can be rendered from a hand-made view. Helpers every section uses (escaping, swatches,
legends, tables) live in `common.py`.

A new section: add `sections/<name>.py` in this shape, then one line in `report/html.py`'s
`BODY` (its place on the page) and one in `_views` there (the arguments its `view` takes).
"""
