"""Explanations: supplement B's scale-correlation analysis (and, later, supplement C's heatmaps)."""
