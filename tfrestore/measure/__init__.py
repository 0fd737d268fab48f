"""Scores and statistics: every metric the papers report (feature errors, PSNR, SSIM, Gram score) and per-layer
feature statistics. Pure functions of arrays; imports nothing of the project."""
