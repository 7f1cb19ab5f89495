"""What a person reads after a run: the run's Markdown report with plots (run.py), the sweep's
table, heatmap and best config (sweep.py); plots.py sets matplotlib up once for all of them."""
