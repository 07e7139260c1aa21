"""The commands that measure the tables and write docs/: the recipe search (pilot), reliability,
datasheet, expected accuracy, leaderboard (with held-out scoring) and the throughput benchmark."""
