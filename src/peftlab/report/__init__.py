"""Reports: the leaderboard (terminal, JSON, CSV)."""
