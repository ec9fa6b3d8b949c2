"""What is made from results on disk after (or during) a run: result inputs, the leaderboard,
performance profiles and AUP, plots, the HTML report and the live status. Reads files only."""
