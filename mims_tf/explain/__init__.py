"""Explanations: supplement C's heatmaps (`heatmap`) and supplement B's scale-correlation analysis."""
