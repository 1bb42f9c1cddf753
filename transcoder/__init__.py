"""Source file → packaged HLS title: one ffmpeg process per title, progress, atomic publish."""
