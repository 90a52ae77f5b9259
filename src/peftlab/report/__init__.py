"""Reports: the leaderboard (terminal, JSON, CSV) and the HTML report.

The HTML report flows collect.py (runs, curves, predictions and the scores computed once:
per-row ROUGE, BERTScore) -> recommend.py (the recommendation, made once) -> sections/ (one
module per section: a prepared view, then its markup) -> html.py (assembles and writes the
page and the PNGs). fmt.py formats numbers and plots.py draws the charts for all of them.
"""
